//! What metering costs on a real program: runs one module through the
//! sandbox with metering on (the production engine) and on an otherwise
//! identical engine with metering off, and prints the wall-time ratio.
//!
//! ```text
//! cargo run --release -p biop2p --example metering_cost -- [--input FILE] [--runs N] FILE.wasm [ARGS...]
//! ```
//!
//! `--input` becomes the guest's stdin (a component workload's `run`
//! argument). Both sandboxes compile the module once before timing (the
//! compiled code is cached in memory, as on a host after a module's first
//! task), then runs alternate between them; the figures are medians. The
//! outputs of both must be identical, or the ratio would compare different
//! work.
//!
//! The unmetered engine exists for this measurement only
//! ([`EngineConfig::metering`]); nothing in the CLI or the network protocol
//! can turn metering off.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use biop2p::sandbox::{EngineConfig, Sandbox, SandboxConfig, Task, TaskResult, WasmModule};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut input = Vec::new();
    let mut runs = 5usize;
    let mut file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--input" => {
                let p = args.next().context("--input needs a file")?;
                input = std::fs::read(&p).with_context(|| format!("cannot read {p}"))?;
            }
            "--runs" => {
                runs = args.next().context("--runs needs a count")?.parse()?;
            }
            _ => {
                file = Some(a);
                break;
            }
        }
    }
    let Some(file) = file else {
        bail!("usage: metering_cost [--input FILE] [--runs N] FILE.wasm [ARGS...]");
    };
    let guest_args: Vec<String> = args.collect();
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {file}"))?;
    let module = WasmModule::new(bytes);

    let metered = Sandbox::new(SandboxConfig::default())?;
    let unmetered = Sandbox::new(SandboxConfig {
        engine: EngineConfig {
            metering: false,
            ..EngineConfig::default()
        },
        // Nothing to calibrate without fuel; the rate is unused.
        fuel_per_sec: Some(1),
        ..SandboxConfig::default()
    })?;

    let mut task = Task::new(module, input);
    task.args = guest_args;
    // The limits `biop2p run` applies by default, except that the fuel cap
    // must not end a long program early.
    task.limits.fuel = u64::MAX / 4;

    let t = Instant::now();
    let first_m = run(&metered, &task, "metered")?;
    eprintln!(
        "compiled + first metered run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let first_u = run(&unmetered, &task, "unmetered")?;
    eprintln!(
        "compiled + first unmetered run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if first_m.outcome.as_ref().ok() != first_u.outcome.as_ref().ok() {
        bail!("metered and unmetered runs produced different output");
    }

    let mut m = Vec::new();
    let mut u = Vec::new();
    let mut fuel = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = run(&metered, &task, "metered")?;
        m.push(t.elapsed().as_secs_f64());
        fuel.push(r.counters.fuel_used);
        let t = Instant::now();
        run(&unmetered, &task, "unmetered")?;
        u.push(t.elapsed().as_secs_f64());
    }
    // The instrumentation-meter prototype, on the unmetered engine (core
    // modules only).
    let mut p = Vec::new();
    if task.module.bytes().get(6..8) == Some(&[1, 0][..]) {
        eprintln!("a component: skipping the instrumentation prototype (core modules only)");
    } else {
        let bytes = instrument::instrument(task.module.bytes(), i64::MAX / 4)?;
        let mut itask = task.clone();
        itask.module = WasmModule::new(bytes);
        let first_i = run(&unmetered, &itask, "instrumented")?;
        if first_i.outcome.as_ref().ok() != first_m.outcome.as_ref().ok() {
            bail!("the instrumented module produced different output");
        }
        for _ in 0..runs {
            let t = Instant::now();
            run(&unmetered, &itask, "instrumented")?;
            p.push(t.elapsed().as_secs_f64());
        }
        p.sort_by(f64::total_cmp);
    }
    m.sort_by(f64::total_cmp);
    u.sort_by(f64::total_cmp);
    let (mm, um) = (m[m.len() / 2], u[u.len() / 2]);
    fuel.dedup();
    println!("module        {file}");
    println!("runs          {runs} each, alternating; medians");
    println!("metered       {:.3} ms   (min {:.3})", mm * 1e3, m[0] * 1e3);
    println!("unmetered     {:.3} ms   (min {:.3})", um * 1e3, u[0] * 1e3);
    println!("ratio         {:.3}   (fuel / unmetered)", mm / um);
    if !p.is_empty() {
        let pm = p[p.len() / 2];
        println!(
            "instrumented  {:.3} ms   (min {:.3}), ratio {:.3}   (prototype meter / unmetered)",
            pm * 1e3,
            p[0] * 1e3,
            pm / um
        );
    }
    println!(
        "fuel used     {} ({})",
        fuel[0],
        if fuel.len() == 1 {
            "identical on every run"
        } else {
            "DIFFERS between runs"
        }
    );
    println!(
        "output        {} bytes, identical metered and unmetered",
        first_m.counters.output_bytes
    );
    Ok(())
}

fn run(sandbox: &Sandbox, task: &Task, what: &str) -> Result<TaskResult> {
    let r = sandbox.run(task);
    if let Err(e) = &r.outcome {
        let stderr = String::from_utf8_lossy(&r.stderr);
        bail!("{what} run failed: {}: {e}\n{stderr}", e.kind());
    }
    Ok(r)
}

/// A prototype of the other meter the issue describes, for measurement only
/// (core modules only; nothing in the sandbox uses it): the module is
/// rewritten before compiling so that an exported mutable i64 global
/// (`biop2p_meter`, starting at the budget) is decremented by a static cost
/// at each function entry and loop header (the count of operators in that
/// function or loop body outside nested loops), and by `len / 64` before each
/// `memory.copy` and `memory.fill`; below zero the guest traps
/// (`unreachable`). Unlike wasmtime's fuel, the slow path is a trap, not a
/// call, so Cranelift need not keep registers free around it.
mod instrument {
    use anyhow::{Result, bail};
    use wasm_encoder::reencode::{Error, Reencode, utils};
    use wasm_encoder::{
        BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, GlobalSection,
        GlobalType, Instruction as I, ValType,
    };
    use wasmparser::{CompositeInnerType, Operator, Parser, Payload, TypeRef};

    struct Meter {
        global: u32,
        budget: i64,
        func_types: Vec<u32>,
        type_params: Vec<u32>,
        next_func: usize,
    }

    /// Rewrites a core module; the meter starts at `budget`.
    pub fn instrument(wasm: &[u8], budget: i64) -> Result<Vec<u8>> {
        let mut m = Meter {
            global: 0,
            budget,
            func_types: Vec::new(),
            type_params: Vec::new(),
            next_func: 0,
        };
        let mut has_globals = false;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(r) => {
                    for group in r {
                        for st in group?.into_types() {
                            m.type_params.push(match &st.composite_type.inner {
                                CompositeInnerType::Func(f) => f.params().len() as u32,
                                _ => 0,
                            });
                        }
                    }
                }
                Payload::ImportSection(r) => {
                    for imp in r {
                        if let TypeRef::Global(_) = imp?.ty {
                            m.global += 1;
                        }
                    }
                }
                Payload::FunctionSection(r) => {
                    for t in r {
                        m.func_types.push(t?);
                    }
                }
                Payload::GlobalSection(r) => {
                    m.global += r.count();
                    has_globals = true;
                }
                _ => {}
            }
        }
        if !has_globals {
            bail!("the prototype needs a module with a global section");
        }
        let mut out = wasm_encoder::Module::new();
        m.parse_core_module(&mut out, Parser::new(0), wasm)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(out.finish())
    }

    impl Meter {
        fn charge(&self, f: &mut Function, cost: u64) {
            if cost == 0 {
                return;
            }
            f.instruction(&I::GlobalGet(self.global))
                .instruction(&I::I64Const(cost as i64))
                .instruction(&I::I64Sub)
                .instruction(&I::GlobalSet(self.global));
            self.check(f);
        }

        fn check(&self, f: &mut Function) {
            f.instruction(&I::GlobalGet(self.global))
                .instruction(&I::I64Const(0))
                .instruction(&I::I64LtS)
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::Unreachable)
                .instruction(&I::End);
        }
    }

    impl Reencode for Meter {
        type Error = std::convert::Infallible;

        fn parse_global_section(
            &mut self,
            globals: &mut GlobalSection,
            section: wasmparser::GlobalSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_global_section(self, globals, section)?;
            globals.global(
                GlobalType {
                    val_type: ValType::I64,
                    mutable: true,
                    shared: false,
                },
                &ConstExpr::i64_const(self.budget),
            );
            Ok(())
        }

        fn parse_export_section(
            &mut self,
            exports: &mut ExportSection,
            section: wasmparser::ExportSectionReader<'_>,
        ) -> Result<(), Error<Self::Error>> {
            utils::parse_export_section(self, exports, section)?;
            exports.export("biop2p_meter", ExportKind::Global, self.global);
            Ok(())
        }

        fn parse_function_body(
            &mut self,
            code: &mut CodeSection,
            func: wasmparser::FunctionBody<'_>,
        ) -> Result<(), Error<Self::Error>> {
            let ty = self.func_types[self.next_func];
            self.next_func += 1;
            let params = self.type_params[ty as usize];
            let mut locals = Vec::new();
            let mut n_locals = 0;
            for pair in func.get_locals_reader()? {
                let (count, ty) = pair?;
                n_locals += count;
                locals.push((count, self.val_type(ty)?));
            }
            let tmp = params + n_locals;
            locals.push((1, ValType::I32));
            let mut ops = Vec::new();
            let mut reader = func.get_operators_reader()?;
            while !reader.eof() {
                ops.push(reader.read()?);
            }
            // Region 0 is the function body outside loops; each loop is one
            // more region.
            let mut costs = vec![0u64];
            let mut loop_regions = Vec::new();
            let mut open: Vec<Option<usize>> = Vec::new();
            let mut cur = 0;
            for op in &ops {
                costs[cur] += 1;
                match op {
                    Operator::Loop { .. } => {
                        let id = costs.len();
                        costs.push(0);
                        loop_regions.push(id);
                        open.push(Some(cur));
                        cur = id;
                    }
                    Operator::Block { .. }
                    | Operator::If { .. }
                    | Operator::Try { .. }
                    | Operator::TryTable { .. } => open.push(None),
                    Operator::End | Operator::Delegate { .. } => {
                        if let Some(Some(prev)) = open.pop() {
                            cur = prev;
                        }
                    }
                    _ => {}
                }
            }
            let mut f = Function::new(locals);
            self.charge(&mut f, costs[0]);
            let mut next_loop = 0;
            for op in ops {
                let is_loop = matches!(op, Operator::Loop { .. });
                if matches!(
                    op,
                    Operator::MemoryCopy { .. } | Operator::MemoryFill { .. }
                ) {
                    // Stack: [.., len]; charge len / 64.
                    f.instruction(&I::LocalTee(tmp))
                        .instruction(&I::GlobalGet(self.global))
                        .instruction(&I::LocalGet(tmp))
                        .instruction(&I::I64ExtendI32U)
                        .instruction(&I::I64Const(6))
                        .instruction(&I::I64ShrU)
                        .instruction(&I::I64Sub)
                        .instruction(&I::GlobalSet(self.global));
                    self.check(&mut f);
                }
                f.instruction(&self.instruction(op)?);
                if is_loop {
                    self.charge(&mut f, costs[loop_regions[next_loop]]);
                    next_loop += 1;
                }
            }
            code.function(&f);
            Ok(())
        }
    }
}
