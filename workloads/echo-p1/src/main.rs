//! A WASI preview-1 command for testing the host's preview-1 path.
//!
//! If given arguments (after the program name) it first writes them joined
//! by single spaces and followed by a newline; then it copies standard input
//! to standard output until end of input.
//!
//! Build: `cargo build --release --target wasm32-wasip1 -p wl-echo-p1`.

use std::io::{self, Read, Write};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if !args.is_empty() {
        out.write_all(args.join(" ").as_bytes())?;
        out.write_all(b"\n")?;
    }
    let mut buf = [0u8; 64 * 1024];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    out.flush()
}
