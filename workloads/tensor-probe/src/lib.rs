//! A workload that calls the host's tensor and data interfaces as its
//! input says, for the tests of their metering and refusals (a hostile
//! guest can ask for anything, so this one asks for what it is told).
//!
//! Input (ASCII, one of):
//! - `matmul M K N A_LEN B_LEN SPIN`: `matmul-bt` of operands of `A_LEN`
//!   and `B_LEN` values (`a[t] = t % 7`, `b[t] = t % 5`) declared `M × K`
//!   and `N × K`, then `SPIN` rounds of a loop without host calls, then
//!   the log line `spun`. Output:
//!   `ok LEN SUM` (the result's length and its sum); a refusal is the
//!   task's `guest_error`.
//! - `data NAME`: reads `/data/NAME` through the data interface. Output:
//!   its length.
//!
//! And the hostile guests of the meter's tests, as a component:
//! - `spin N`: `N` rounds of a loop without host calls;
//! - `recurse N`: recursion `N` deep;
//! - `fill N`: a buffer of `N` bytes filled (`memory.fill`);
//! - `calls N`: `N` host calls (progress reports) in a loop.

fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let text = String::from_utf8(input).map_err(|_| "input must be ASCII".to_string())?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["spin", n] => {
            let mut x = 1u64;
            for i in 0..number(n)? {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ i);
            }
            Ok((x & 1).to_string().into_bytes())
        }
        ["recurse", n] => Ok(recurse(number(n)?).to_string().into_bytes()),
        ["fill", n] => {
            let len = usize::try_from(number(n)?).map_err(|e| e.to_string())?;
            let v = std::hint::black_box(vec![0xa5u8; len]);
            Ok(v.len().to_string().into_bytes())
        }
        ["calls", n] => {
            for i in 0..number(n)? {
                biop2p_guest::progress((i % 100) as f32 / 100.0);
            }
            Ok(b"called".to_vec())
        }
        ["data", name] => {
            let bytes = biop2p_guest::data::read(name)?;
            Ok(bytes.len().to_string().into_bytes())
        }
        ["matmul", rest @ ..] if rest.len() == 6 => {
            let n: Vec<u64> = rest
                .iter()
                .map(|w| w.parse().map_err(|_| format!("not a number: {w}")))
                .collect::<Result<_, _>>()?;
            let a: Vec<f32> = (0..n[3]).map(|t| (t % 7) as f32).collect();
            let b: Vec<f32> = (0..n[4]).map(|t| (t % 5) as f32).collect();
            let c = biop2p_guest::tensor::matmul_bt(&a, &b, n[0] as u32, n[1] as u32, n[2] as u32)?;
            let mut x = 1u64;
            for i in 0..n[5] {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ i);
            }
            // Seen by the host only if the loop ran to its end.
            biop2p_guest::log::info("spun");
            let sum: f64 = c.iter().map(|v| f64::from(*v)).sum();
            Ok(format!("ok {} {sum} {}", c.len(), x & 1).into_bytes())
        }
        _ => Err(format!("unknown probe: {text:?}")),
    }
}

fn number(w: &str) -> Result<u64, String> {
    w.parse().map_err(|_| format!("not a number: {w}"))
}

/// Recursion that the compiler cannot turn into a loop, with little in
/// linear memory per frame, so the wasm stack is what runs out.
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let r = recurse(std::hint::black_box(n - 1));
    std::hint::black_box(r) ^ n
}

biop2p_guest::workload!(run);
