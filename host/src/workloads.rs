//! The workloads built from `workloads/` at compile time and embedded in the
//! binary, so the host can benchmark and demonstrate itself with no files.

/// One embedded workload.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Name, as in `builtin:NAME`.
    pub name: &'static str,
    /// What it does and what its input is.
    pub description: &'static str,
    /// The wasm bytes.
    pub bytes: &'static [u8],
}

/// The echo workload component: returns its input (`biop2p:workload`).
pub const ECHO: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_ECHO"));
/// The echo WASI preview-1 command: stdin to stdout, argv first.
pub const ECHO_P1: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_ECHO_P1"));
/// The f32 matmul workload component (simd128).
pub const MATMUL: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_MATMUL"));
/// The small neural-network workload component.
pub const MLP: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_MLP"));

/// The handwritten-digits MLP component (`train`, `infer`; simd128).
pub const DIGITS: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_DIGITS"));

/// The all-MiniLM-L6-v2 sentence-embedding component (candle, simd128;
/// model at `/data/model` and `/data/vocab`).
pub const EMBED: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_EMBED"));

/// A component that sleeps for the seconds in its input (virtual time).
pub const SLEEP: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_SLEEP"));

/// A test component that calls the tensor and data interfaces as its input
/// says (see `workloads/tensor-probe`).
pub const TENSOR_PROBE: &[u8] = include_bytes!(env!("BIOP2P_WASM_WL_TENSOR_PROBE"));

/// Every embedded workload.
pub const ALL: &[Builtin] = &[
    Builtin {
        name: "echo",
        description: "component: returns its input unchanged",
        bytes: ECHO,
    },
    Builtin {
        name: "echo-p1",
        description: "WASI p1 command: writes its argv, then copies stdin to stdout",
        bytes: ECHO_P1,
    },
    Builtin {
        name: "matmul",
        description: "component: n×n f32 matrix multiply; input is little-endian u32 n",
        bytes: MATMUL,
    },
    Builtin {
        name: "mlp",
        description: "component: trains and runs a small neural network; input is JSON",
        bytes: MLP,
    },
    Builtin {
        name: "digits",
        description: "component: 64-64-10 MLP on the 8x8 digits; argv train|infer, data at /data (see workloads/digits)",
        bytes: DIGITS,
    },
    Builtin {
        name: "embed",
        description: "component: all-MiniLM-L6-v2 sentence embeddings; input one sentence a line, output EMB1 (384 f32 each); data model=model.safetensors vocab=vocab.txt (see workloads/embed-model)",
        bytes: EMBED,
    },
    Builtin {
        name: "sleep",
        description: "component: sleeps for the seconds in its input; guest time is virtual, so it returns at once",
        bytes: SLEEP,
    },
    Builtin {
        name: "tensor-probe",
        description: "component: calls the host's tensor and data interfaces as its input says (`matmul M K N A_LEN B_LEN SPIN`, `data NAME`); for tests",
        bytes: TENSOR_PROBE,
    },
];

/// Looks up an embedded workload by name.
pub fn get(name: &str) -> Option<&'static Builtin> {
    ALL.iter().find(|b| b.name == name)
}
