//! The BERT uncased WordPiece tokenizer of all-MiniLM-L6-v2, read from its
//! `vocab.txt`, as the model's `tokenizer.json` configures it:
//! `BertNormalizer` (clean text, CJK characters apart, accents stripped,
//! lower case), `BertPreTokenizer` (split on whitespace and punctuation),
//! then greedy longest-match WordPiece with the `##` prefix, `[UNK]` for a
//! word that cannot be split, `[CLS] … [SEP]` around, at most
//! [`MAX_TOKENS`] tokens.
//!
//! Written here rather than taken from the `tokenizers` crate, which is
//! heavy and troublesome on wasm; the guest and the native reference use
//! this same code, so their token ids are the same by construction.

use std::collections::HashMap;

use crate::EmbedError;

/// Longest sequence, `[CLS]` and `[SEP]` included (`tokenizer.json`'s
/// truncation `max_length`).
pub const MAX_TOKENS: usize = 128;
/// Longest word WordPiece tries to split; longer ones are `[UNK]`.
const MAX_WORD_CHARS: usize = 100;

/// A WordPiece vocabulary with its special tokens.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    cls: u32,
    sep: u32,
    unk: u32,
}

impl Tokenizer {
    /// Reads `vocab.txt`: one token a line, its id the line's number.
    pub fn from_vocab(text: &str) -> Result<Self, EmbedError> {
        let vocab: HashMap<String, u32> = text
            .lines()
            .enumerate()
            .map(|(i, t)| (t.trim_end_matches('\r').to_string(), i as u32))
            .collect();
        let id = |t: &str| {
            vocab
                .get(t)
                .copied()
                .ok_or_else(|| EmbedError::Vocab(format!("no {t} token")))
        };
        Ok(Tokenizer {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            unk: id("[UNK]")?,
            vocab,
        })
    }

    /// Tokens in the vocabulary.
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Whether the vocabulary is empty (never, once read).
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// The ids of `text`: `[CLS]`, its word pieces (truncated), `[SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls];
        'words: for word in pre_tokenize(&normalize(text)) {
            for id in self.word_pieces(&word) {
                if ids.len() == MAX_TOKENS - 1 {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    /// Greedy longest-match-first WordPiece of one word.
    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<(usize, char)> = word.char_indices().collect();
        if chars.len() > MAX_WORD_CHARS {
            return vec![self.unk];
        }
        let mut out = Vec::new();
        let mut start = 0;
        let mut piece = String::new();
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while end > start {
                let from = chars[start].0;
                let to = chars.get(end).map_or(word.len(), |c| c.0);
                piece.clear();
                if start > 0 {
                    piece.push_str("##");
                }
                piece.push_str(&word[from..to]);
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                None => return vec![self.unk],
            }
            start = end;
        }
        out
    }
}

/// `BertNormalizer` with `clean_text`, `handle_chinese_chars`, accents
/// stripped and lower case.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c == '\0' || c == '\u{fffd}' || is_control(c) {
            continue;
        }
        if c.is_whitespace() {
            out.push(' ');
        } else if is_cjk(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            for l in c.to_lowercase() {
                if let Some(b) = strip_accent(l) {
                    out.push(b);
                }
            }
        }
    }
    out
}

/// `BertPreTokenizer`: words split on whitespace, every punctuation
/// character a word of its own.
pub fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        } else if is_punctuation(c) {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            words.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// BERT's control characters: `Cc` and the common `Cf` ones, but not the
/// whitespace controls (tab, newline, carriage return).
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// The CJK ideograph blocks BERT puts spaces around.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// BERT's punctuation: all non-alphanumeric ASCII printables, and the
/// Unicode punctuation (`P*`) of the blocks text commonly uses (Latin-1,
/// general punctuation, CJK symbols, full-width forms). Rust's standard
/// library has no general-category table; this covers what the model's
/// training text mostly had.
fn is_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    matches!(c,
        '\u{a1}' | '\u{a7}' | '\u{ab}' | '\u{b6}' | '\u{b7}' | '\u{bb}' | '\u{bf}'
        | '\u{37e}' | '\u{387}'
        | '\u{55a}'..='\u{55f}' | '\u{589}' | '\u{58a}'
        | '\u{5be}' | '\u{5c0}' | '\u{5c3}' | '\u{5c6}' | '\u{5f3}' | '\u{5f4}'
        | '\u{609}' | '\u{60a}' | '\u{60c}' | '\u{60d}' | '\u{61b}' | '\u{61e}' | '\u{61f}'
        | '\u{66a}'..='\u{66d}' | '\u{6d4}'
        | '\u{964}' | '\u{965}' | '\u{970}'
        | '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{2043}' | '\u{2045}'..='\u{2051}'
        | '\u{2053}'..='\u{205e}' | '\u{207d}' | '\u{207e}' | '\u{208d}' | '\u{208e}'
        | '\u{2308}'..='\u{230b}' | '\u{2329}' | '\u{232a}'
        | '\u{2768}'..='\u{2775}' | '\u{27c5}' | '\u{27c6}' | '\u{27e6}'..='\u{27ef}'
        | '\u{2983}'..='\u{2998}' | '\u{29d8}'..='\u{29db}' | '\u{29fc}' | '\u{29fd}'
        | '\u{2e00}'..='\u{2e2e}' | '\u{2e30}'..='\u{2e4f}'
        | '\u{3001}'..='\u{3003}' | '\u{3008}'..='\u{3011}' | '\u{3014}'..='\u{301f}'
        | '\u{3030}' | '\u{303d}' | '\u{30a0}' | '\u{30fb}'
        | '\u{fe10}'..='\u{fe19}' | '\u{fe30}'..='\u{fe52}' | '\u{fe54}'..='\u{fe61}'
        | '\u{fe63}' | '\u{fe68}' | '\u{fe6a}' | '\u{fe6b}'
        | '\u{ff01}'..='\u{ff03}' | '\u{ff05}'..='\u{ff0a}' | '\u{ff0c}'..='\u{ff0f}'
        | '\u{ff1a}' | '\u{ff1b}' | '\u{ff1f}' | '\u{ff20}' | '\u{ff3b}'..='\u{ff3d}'
        | '\u{ff3f}' | '\u{ff5b}' | '\u{ff5d}' | '\u{ff5f}'..='\u{ff65}')
}

/// Lower-case precomposed Latin letters and what NFD leaves of them once
/// the combining marks are dropped.
const ACCENTED: &str =
    "àáâãäåçèéêëìíîïñòóôõöùúûüýÿāăąćĉċčďēĕėęěĝğġģĥĩīĭįĵķĺļľńņňōŏőŕŗřśŝşšţťũūŭůűųŵŷźżž";
const BASES: &str =
    "aaaaaaceeeeiiiinooooouuuuyyaaaccccdeeeeegggghiiiijklllnnnooorrrssssttuuuuuuwyzzz";

/// Accent stripping (NFD, then the nonspacing marks dropped) for a
/// lower-case character: combining marks (U+0300..U+036F) vanish, the
/// precomposed Latin letters of [`ACCENTED`] become their base letter,
/// everything else is kept. A small table instead of the Unicode
/// decomposition data: it covers Latin-1 and Latin Extended-A.
fn strip_accent(c: char) -> Option<char> {
    if ('\u{300}'..='\u{36f}').contains(&c) {
        return None;
    }
    if c.is_ascii() {
        return Some(c);
    }
    match ACCENTED.chars().position(|a| a == c) {
        Some(i) => BASES.chars().nth(i),
        None => Some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\nun\n##aff\n##able\n,\nhello\ncafe\n!\n世\n";
        Tokenizer::from_vocab(vocab).unwrap()
    }

    #[test]
    fn accent_table_lines_up() {
        assert_eq!(ACCENTED.chars().count(), BASES.chars().count());
    }

    #[test]
    fn normalizes_splits_and_word_pieces() {
        let t = tok();
        assert_eq!(normalize("Café\tÜber"), "cafe uber");
        assert_eq!(pre_tokenize("hello, the!"), ["hello", ",", "the", "!"]);
        assert_eq!(t.encode("Unaffable"), [2, 5, 6, 7, 3]);
        assert_eq!(
            t.encode("HELLO, café! unknownword"),
            [2, 9, 8, 10, 11, 1, 3]
        );
        assert_eq!(t.encode("世界"), [2, 12, 1, 3]);
        assert_eq!(t.encode(""), [2, 3]);
        let long = "the ".repeat(500);
        let ids = t.encode(&long);
        assert_eq!(ids.len(), MAX_TOKENS);
        assert_eq!((ids[0], ids[MAX_TOKENS - 1]), (2, 3));
    }
}
