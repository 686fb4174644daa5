//! The core-module rewriter: static costs at function entries and loop
//! headers, dynamic costs before bulk memory and table operations, and a
//! trap when the counter goes below zero.

use std::collections::{HashMap, HashSet};

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction as I, Module,
    TypeSection, ValType,
};
use wasmparser::{CompositeInnerType, Operator, Parser, Payload, TypeRef};

/// Where the counter of a rewritten module lives.
pub(crate) enum Mode<'a> {
    /// A WASI command run on its own: the module defines the counter
    /// (starting at 0) and exports it as `counter_export`; the host sets it
    /// after instantiation and charges host calls from a call hook. A start
    /// function, if any, is no longer run at instantiation but exported as
    /// `start_export`, for the host to call once the counter is set.
    Standalone {
        counter_export: &'a str,
        start_export: &'a str,
    },
    /// A module embedded in a component: the counter is imported (shared by
    /// every core instance of the task) from `import_module`, together with
    /// the host's `sync` function. Every import named in `host_imports` is
    /// reached through a wrapper that calls `sync` first, so host calls are
    /// charged and the host sees the count at each one.
    Embedded {
        import_module: &'a str,
        host_imports: &'a HashSet<(String, String)>,
    },
}

/// Names the module already uses, for choosing the meter's names.
#[derive(Default)]
pub(crate) struct Names {
    pub(crate) exports: HashSet<String>,
    pub(crate) import_modules: HashSet<String>,
    pub(crate) has_start: bool,
}

/// Reads the names a module exports and imports from.
pub(crate) fn names(wasm: &[u8]) -> Result<Names, String> {
    let mut n = Names::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(r) => {
                for imp in r {
                    let imp = imp.map_err(|e| e.to_string())?;
                    n.import_modules.insert(imp.module.to_string());
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    n.exports
                        .insert(e.map_err(|e| e.to_string())?.name.to_string());
                }
            }
            Payload::StartSection { .. } => n.has_start = true,
            Payload::CodeSectionStart { .. } | Payload::End(_) => {}
            _ => {}
        }
    }
    Ok(n)
}

/// A name not in `taken`: `base`, else `base` followed by `-2`, `-3`, ...
pub(crate) fn unique(base: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_string();
    }
    (2u32..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken.contains(n))
        .expect("a free name")
}

/// What the pre-scan learns about a module.
#[derive(Default)]
struct Scan {
    /// Param and result counts per type index (0 for non-function types).
    type_params: Vec<(u32, u32)>,
    n_types: u32,
    imported_funcs: Vec<(String, String, u32)>,
    n_imported_globals: u32,
    defined_func_types: Vec<u32>,
    memory64: Vec<bool>,
    table64: Vec<bool>,
    start: Option<u32>,
}

fn scan(wasm: &[u8]) -> Result<Scan, String> {
    let mut s = Scan::default();
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(err)? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Err("not a core module".into());
            }
            Payload::TypeSection(r) => {
                for group in r {
                    for st in group.map_err(err)?.into_types() {
                        s.type_params.push(match &st.composite_type.inner {
                            CompositeInnerType::Func(f) => {
                                (f.params().len() as u32, f.results().len() as u32)
                            }
                            _ => (0, 0),
                        });
                        s.n_types += 1;
                    }
                }
            }
            Payload::ImportSection(r) => {
                for imp in r {
                    let imp = imp.map_err(err)?;
                    match imp.ty {
                        TypeRef::Func(t) => {
                            s.imported_funcs
                                .push((imp.module.to_string(), imp.name.to_string(), t))
                        }
                        TypeRef::Global(_) => s.n_imported_globals += 1,
                        TypeRef::Memory(m) => s.memory64.push(m.memory64),
                        TypeRef::Table(t) => s.table64.push(t.table64),
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    s.defined_func_types.push(t.map_err(err)?);
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    s.memory64.push(m.map_err(err)?.memory64);
                }
            }
            Payload::TableSection(r) => {
                for t in r {
                    s.table64.push(t.map_err(err)?.ty.table64);
                }
            }
            Payload::StartSection { func, .. } => s.start = Some(func),
            _ => {}
        }
    }
    Ok(s)
}

/// The rewriter's state while re-encoding one module.
struct Rewriter<'a> {
    mode: &'a Mode<'a>,
    scan: Scan,
    /// Index of the counter global in the rewritten module.
    counter: u32,
    /// Index of the imported `sync` function (embedded mode).
    sync: u32,
    /// Index of the imported `settle` function, right after `sync`.
    settle: u32,
    /// Original import index → wrapper function index (embedded mode).
    wrappers: HashMap<u32, u32>,
    /// Wrapped imports in wrapper order: (import index, type index).
    wrapped: Vec<(u32, u32)>,
    next_func: usize,
    /// The scratch i64 local of the function being rewritten.
    tmp_counter: u32,
    /// The code section being built, and entries still to come.
    code: CodeSection,
    code_left: u32,
}

/// Rewrites a core module as `mode` says. The input must be valid; the
/// output is validated again by wasmtime when it is compiled.
pub(crate) fn rewrite(wasm: &[u8], mode: &Mode<'_>) -> Result<Vec<u8>, String> {
    let scan = scan(wasm)?;
    let n_imp = scan.imported_funcs.len() as u32;
    let n_def = scan.defined_func_types.len() as u32;
    let mut r = Rewriter {
        mode,
        counter: 0,
        sync: n_imp,
        settle: n_imp + 1,
        wrappers: HashMap::new(),
        wrapped: Vec::new(),
        next_func: 0,
        tmp_counter: 0,
        code: CodeSection::new(),
        code_left: 0,
        scan,
    };
    match mode {
        Mode::Standalone { .. } => {
            // Appended after every defined global: nothing shifts.
            let mut n_globals = r.scan.n_imported_globals;
            for payload in Parser::new(0).parse_all(wasm) {
                if let Payload::GlobalSection(g) = payload.map_err(|e| e.to_string())? {
                    n_globals += g.count();
                }
            }
            r.counter = n_globals;
        }
        Mode::Embedded { host_imports, .. } => {
            // The counter is the last imported global: defined globals
            // shift by one; `sync` and `settle` are the last imported
            // functions, so defined functions shift by two.
            r.counter = r.scan.n_imported_globals;
            for (i, (m, n, t)) in r.scan.imported_funcs.iter().enumerate() {
                if host_imports.contains(&(m.clone(), n.clone())) {
                    let w = n_imp + 2 + n_def + r.wrapped.len() as u32;
                    r.wrappers.insert(i as u32, w);
                    r.wrapped.push((i as u32, *t));
                }
            }
        }
    }
    let mut out = Module::new();
    r.sections(wasm, &mut out).map_err(|e| format!("{e:?}"))?;
    Ok(out.finish())
}

/// Section order of the sections the rewriter may have to add.
const ORDER_TYPE: u8 = 1;
const ORDER_IMPORT: u8 = 2;
const ORDER_FUNCTION: u8 = 3;
const ORDER_GLOBAL: u8 = 7;
const ORDER_EXPORT: u8 = 8;
const ORDER_CODE: u8 = 12;

/// Position of a section id in the binary's required order.
fn order(id: u8) -> u8 {
    match id {
        1 => 1,   // type
        2 => 2,   // import
        3 => 3,   // function
        4 => 4,   // table
        5 => 5,   // memory
        13 => 6,  // tag
        6 => 7,   // global
        7 => 8,   // export
        8 => 9,   // start
        9 => 10,  // element
        12 => 11, // data count
        10 => 12, // code
        11 => 13, // data
        _ => 0,
    }
}

impl Rewriter<'_> {
    fn embedded(&self) -> bool {
        matches!(self.mode, Mode::Embedded { .. })
    }

    /// The sections the rewriter adds to, in order, for emitting them when
    /// the module lacks one.
    fn pending(&self) -> Vec<u8> {
        let mut v = Vec::new();
        if self.embedded() {
            v.extend([ORDER_TYPE, ORDER_IMPORT]);
            if !self.wrapped.is_empty() {
                v.extend([ORDER_FUNCTION, ORDER_CODE]);
            }
        } else {
            v.extend([ORDER_GLOBAL, ORDER_EXPORT]);
        }
        v
    }

    fn sections(&mut self, wasm: &[u8], out: &mut Module) -> Result<(), Error<String>> {
        let mut missing = self.pending();
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload?;
            let id = match &payload {
                Payload::TypeSection(_) => 1,
                Payload::ImportSection(_) => 2,
                Payload::FunctionSection(_) => 3,
                Payload::TableSection(_) => 4,
                Payload::MemorySection(_) => 5,
                Payload::TagSection(_) => 13,
                Payload::GlobalSection(_) => 6,
                Payload::ExportSection(_) => 7,
                Payload::StartSection { .. } => 8,
                Payload::ElementSection(_) => 9,
                Payload::DataCountSection { .. } => 12,
                Payload::CodeSectionStart { .. } => 10,
                Payload::DataSection(_) => 11,
                _ => 0,
            };
            let ord = order(id);
            if ord > 0 {
                // Sections the module lacks but the meter needs come before
                // the first section that must follow them.
                let (before, after): (Vec<u8>, Vec<u8>) = missing.iter().partition(|&&m| m < ord);
                for m in before {
                    self.emit_missing(m, out)?;
                }
                missing = after.into_iter().filter(|&m| m != ord).collect();
            }
            match payload {
                Payload::Version { .. } | Payload::End(_) => {}
                Payload::TypeSection(r) => {
                    let mut s = TypeSection::new();
                    utils::parse_type_section(self, &mut s, r)?;
                    self.extra_types(&mut s);
                    out.section(&s);
                }
                Payload::ImportSection(r) => {
                    let mut s = ImportSection::new();
                    utils::parse_import_section(self, &mut s, r)?;
                    self.extra_imports(&mut s);
                    out.section(&s);
                }
                Payload::FunctionSection(r) => {
                    let mut s = FunctionSection::new();
                    utils::parse_function_section(self, &mut s, r)?;
                    self.extra_functions(&mut s);
                    out.section(&s);
                }
                Payload::TableSection(r) => {
                    let mut s = wasm_encoder::TableSection::new();
                    utils::parse_table_section(self, &mut s, r)?;
                    out.section(&s);
                }
                Payload::MemorySection(r) => {
                    let mut s = wasm_encoder::MemorySection::new();
                    utils::parse_memory_section(self, &mut s, r)?;
                    out.section(&s);
                }
                Payload::TagSection(r) => {
                    let mut s = wasm_encoder::TagSection::new();
                    utils::parse_tag_section(self, &mut s, r)?;
                    out.section(&s);
                }
                Payload::GlobalSection(r) => {
                    let mut s = GlobalSection::new();
                    utils::parse_global_section(self, &mut s, r)?;
                    self.extra_globals(&mut s);
                    out.section(&s);
                }
                Payload::ExportSection(r) => {
                    let mut s = ExportSection::new();
                    utils::parse_export_section(self, &mut s, r)?;
                    self.extra_exports(&mut s);
                    out.section(&s);
                }
                Payload::StartSection { func, .. } => {
                    // Standalone: the host runs the start function itself,
                    // after setting the counter (see `Mode::Standalone`).
                    if self.embedded() {
                        let f = self.function_index(func)?;
                        out.section(&wasm_encoder::StartSection { function_index: f });
                    }
                }
                Payload::ElementSection(r) => {
                    let mut s = wasm_encoder::ElementSection::new();
                    utils::parse_element_section(self, &mut s, r)?;
                    out.section(&s);
                }
                Payload::DataCountSection { count, .. } => {
                    out.section(&wasm_encoder::DataCountSection { count });
                }
                Payload::DataSection(r) => {
                    let mut s = wasm_encoder::DataSection::new();
                    utils::parse_data_section(self, &mut s, r)?;
                    out.section(&s);
                }
                Payload::CodeSectionStart { count, .. } => {
                    self.code_left = count;
                    if count == 0 {
                        self.extra_code();
                        let code = std::mem::take(&mut self.code);
                        out.section(&code);
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    // Entries arrive one at a time; the section is written
                    // once the last one is in.
                    let f = self.instrument(body)?;
                    self.code.function(&f);
                    self.code_left -= 1;
                    if self.code_left == 0 {
                        self.extra_code();
                        let code = std::mem::take(&mut self.code);
                        out.section(&code);
                    }
                }
                Payload::CustomSection(c) => {
                    // Names follow indices, which shift in embedded mode;
                    // they are only for backtraces, so they are dropped there.
                    if !(self.embedded() && c.name() == "name") {
                        out.section(&wasm_encoder::CustomSection {
                            name: c.name().into(),
                            data: c.data().into(),
                        });
                    }
                }
                other => {
                    if let Some((id, range)) = other.as_section() {
                        out.section(&wasm_encoder::RawSection {
                            id,
                            data: &wasm[range],
                        });
                    }
                }
            }
        }
        for m in missing {
            self.emit_missing(m, out)?;
        }
        Ok(())
    }

    fn emit_missing(&mut self, which: u8, out: &mut Module) -> Result<(), Error<String>> {
        match which {
            ORDER_TYPE => {
                let mut s = TypeSection::new();
                self.extra_types(&mut s);
                out.section(&s);
            }
            ORDER_IMPORT => {
                let mut s = ImportSection::new();
                self.extra_imports(&mut s);
                out.section(&s);
            }
            ORDER_FUNCTION => {
                let mut s = FunctionSection::new();
                self.extra_functions(&mut s);
                out.section(&s);
            }
            ORDER_GLOBAL => {
                let mut s = GlobalSection::new();
                self.extra_globals(&mut s);
                out.section(&s);
            }
            ORDER_EXPORT => {
                let mut s = ExportSection::new();
                self.extra_exports(&mut s);
                out.section(&s);
            }
            ORDER_CODE => {
                self.extra_code();
                let code = std::mem::take(&mut self.code);
                out.section(&code);
            }
            _ => {}
        }
        Ok(())
    }

    fn extra_types(&self, s: &mut TypeSection) {
        if self.embedded() {
            // The type of `sync`: counter in, counter out.
            s.ty().function([ValType::I64], [ValType::I64]);
        }
    }

    fn extra_imports(&self, s: &mut ImportSection) {
        if let Mode::Embedded { import_module, .. } = self.mode {
            s.import(
                import_module,
                "sync",
                EntityType::Function(self.scan.n_types),
            );
            s.import(
                import_module,
                "settle",
                EntityType::Function(self.scan.n_types),
            );
            s.import(
                import_module,
                "g",
                EntityType::Global(GlobalType {
                    val_type: ValType::I64,
                    mutable: true,
                    shared: false,
                }),
            );
        }
    }

    fn extra_functions(&self, s: &mut FunctionSection) {
        for (_, ty) in &self.wrapped {
            s.function(*ty);
        }
    }

    fn extra_globals(&self, s: &mut GlobalSection) {
        if !self.embedded() {
            s.global(
                GlobalType {
                    val_type: ValType::I64,
                    mutable: true,
                    shared: false,
                },
                &ConstExpr::i64_const(0),
            );
        }
    }

    fn extra_exports(&self, s: &mut ExportSection) {
        if let Mode::Standalone {
            counter_export,
            start_export,
        } = self.mode
        {
            s.export(counter_export, ExportKind::Global, self.counter);
            if let Some(start) = self.scan.start {
                s.export(start_export, ExportKind::Func, start);
            }
        }
    }

    /// The wrappers: `counter = sync(counter); call import(params...);
    /// counter = settle(counter)`. `settle` takes what the host call itself
    /// cost beyond its flat charge (a tensor operation's, by its shapes), so
    /// guest code after the call runs on what is really left.
    fn extra_code(&mut self) {
        for &(import, ty) in &self.wrapped {
            let params = self.scan.type_params[ty as usize].0;
            let mut f = Function::new([]);
            f.instruction(&I::GlobalGet(self.counter))
                .instruction(&I::Call(self.sync))
                .instruction(&I::GlobalSet(self.counter));
            for p in 0..params {
                f.instruction(&I::LocalGet(p));
            }
            f.instruction(&I::Call(import))
                .instruction(&I::GlobalGet(self.counter))
                .instruction(&I::Call(self.settle))
                .instruction(&I::GlobalSet(self.counter))
                .instruction(&I::End);
            self.code.function(&f);
        }
    }

    /// Subtracts a static `cost` from the counter and checks it.
    fn charge(&self, f: &mut Function, cost: u64) {
        if cost == 0 {
            return;
        }
        f.instruction(&I::GlobalGet(self.counter))
            .instruction(&I::I64Const(cost as i64))
            .instruction(&I::I64Sub);
        self.set_and_check(f);
    }

    /// Traps when the counter is below zero. The trap is the only thing on
    /// the slow path (in embedded mode after telling the host why), so
    /// nothing is live across it and Cranelift keeps registers as they are.
    fn set_and_check(&self, f: &mut Function) {
        // The new value is kept in a local rather than read back from the
        // global: one load fewer (two for a component's imported counter).
        f.instruction(&I::LocalTee(self.tmp_counter))
            .instruction(&I::GlobalSet(self.counter))
            .instruction(&I::LocalGet(self.tmp_counter))
            .instruction(&I::I64Const(0))
            .instruction(&I::I64LtS)
            .instruction(&I::If(BlockType::Empty));
        if self.embedded() {
            f.instruction(&I::GlobalGet(self.counter))
                .instruction(&I::Call(self.sync))
                .instruction(&I::Drop);
        }
        f.instruction(&I::Unreachable).instruction(&I::End);
    }

    /// Charges a length on top of the stack (kept there): `len >> shift`
    /// units, or `min(len, 2^32) << -shift` for a negative shift.
    fn charge_dynamic(&self, f: &mut Function, tmp: Tmp, wide: bool, shift: i32) {
        let t = if wide { tmp.i64 } else { tmp.i32 };
        f.instruction(&I::LocalTee(t))
            .instruction(&I::GlobalGet(self.counter))
            .instruction(&I::LocalGet(t));
        if wide {
            if shift < 0 {
                // min(len, 2^32) so that the shift cannot overflow.
                f.instruction(&I::I64Const(1 << 32))
                    .instruction(&I::LocalGet(t))
                    .instruction(&I::LocalGet(t))
                    .instruction(&I::I64Const(1 << 32))
                    .instruction(&I::I64GtU)
                    .instruction(&I::Select);
            }
        } else {
            f.instruction(&I::I64ExtendI32U);
        }
        if shift > 0 {
            f.instruction(&I::I64Const(i64::from(shift)))
                .instruction(&I::I64ShrU);
        } else if shift < 0 {
            f.instruction(&I::I64Const(i64::from(-shift)))
                .instruction(&I::I64Shl);
        }
        f.instruction(&I::I64Sub);
        self.set_and_check(f);
    }

    fn instrument(
        &mut self,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<Function, Error<String>> {
        let ty = self.scan.defined_func_types[self.next_func];
        self.next_func += 1;
        let params = self.scan.type_params[ty as usize].0;
        let mut locals = Vec::new();
        let mut n_locals = 0u32;
        for pair in body.get_locals_reader()? {
            let (count, ty) = pair?;
            n_locals += count;
            locals.push((count, self.val_type(ty)?));
        }
        let tmp = Tmp {
            i32: params + n_locals,
            i64: params + n_locals + 1,
        };
        locals.push((1, ValType::I32));
        locals.push((1, ValType::I64));
        locals.push((1, ValType::I64));
        self.tmp_counter = params + n_locals + 2;
        let mut ops = Vec::new();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            ops.push(reader.read()?);
        }
        // Region 0 is the function body outside loops; each loop is one more
        // region, charged at its header each time it is entered or branched
        // back to. Every operator counts one unit in the region it is in.
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
        let memory64 = self.scan.memory64.clone();
        let table64 = self.scan.table64.clone();
        let m64 = |m: u32| memory64.get(m as usize).copied().unwrap_or(false);
        let t64 = |t: u32| table64.get(t as usize).copied().unwrap_or(false);
        for op in ops {
            match &op {
                Operator::MemoryFill { mem } => self.charge_dynamic(&mut f, tmp, m64(*mem), 6),
                Operator::MemoryCopy { dst_mem, src_mem } => {
                    self.charge_dynamic(&mut f, tmp, m64(*dst_mem) && m64(*src_mem), 6)
                }
                Operator::MemoryInit { .. } => self.charge_dynamic(&mut f, tmp, false, 6),
                // 64 KiB pages at one unit per 64 bytes.
                Operator::MemoryGrow { mem } => self.charge_dynamic(&mut f, tmp, m64(*mem), -10),
                // Eight elements (64 bytes of references) per unit.
                Operator::TableGrow { table } | Operator::TableFill { table } => {
                    self.charge_dynamic(&mut f, tmp, t64(*table), 3)
                }
                Operator::TableCopy {
                    dst_table,
                    src_table,
                } => self.charge_dynamic(&mut f, tmp, t64(*dst_table) && t64(*src_table), 3),
                Operator::TableInit { .. } => self.charge_dynamic(&mut f, tmp, false, 3),
                _ => {}
            }
            let is_loop = matches!(op, Operator::Loop { .. });
            f.instruction(&self.instruction(op)?);
            if is_loop {
                self.charge(&mut f, costs[loop_regions[next_loop]]);
                next_loop += 1;
            }
        }
        Ok(f)
    }
}

/// The two scratch locals each rewritten function gets.
#[derive(Clone, Copy)]
struct Tmp {
    i32: u32,
    i64: u32,
}

impl Reencode for Rewriter<'_> {
    type Error = String;

    fn function_index(&mut self, func: u32) -> Result<u32, Error<String>> {
        if !self.embedded() {
            return Ok(func);
        }
        if let Some(w) = self.wrappers.get(&func) {
            return Ok(*w);
        }
        let n_imp = self.scan.imported_funcs.len() as u32;
        Ok(if func >= n_imp { func + 2 } else { func })
    }

    fn global_index(&mut self, global: u32) -> Result<u32, Error<String>> {
        if self.embedded() && global >= self.scan.n_imported_globals {
            Ok(global + 1)
        } else {
            Ok(global)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Metered, instrument};

    fn meter(wat: &str) -> Vec<u8> {
        let wasm = wat::parse_str(wat).unwrap();
        match instrument(&wasm).unwrap() {
            Metered::Core { bytes, .. } => {
                wasmparser::Validator::new().validate_all(&bytes).unwrap();
                bytes
            }
            Metered::Component { .. } => panic!("not a component"),
        }
    }

    #[test]
    fn minimal_modules_stay_valid() {
        meter("(module)");
        meter("(module (func (export \"_start\")))");
        meter(
            "(module (memory 1) (func $f (loop (br 0))) (start $f) (export \"biop2p_meter\" (func $f)))",
        );
        meter(
            r#"(module (import "a" "b" (func)) (global (mut i32) (i32.const 0))
            (memory 1) (table 1 funcref)
            (func (export "f") (param i32) (result i32)
              (memory.fill (i32.const 0) (i32.const 0) (local.get 0))
              (drop (table.grow (ref.null func) (local.get 0)))
              (memory.grow (local.get 0))))"#,
        );
    }
}
