//! The component rewriter: meters every core module embedded in a
//! component against one counter shared by all of the task's core
//! instances, and gives the host a way to see that counter.
//!
//! A component's core instances are not reachable through wasmtime's
//! component API (no `Global` handle, and after a trap the store refuses
//! every further call into the component), so the counter cannot simply be
//! an exported global as in a core module. Instead the rewriter puts a
//! prologue in front of the component's own sections:
//!
//! ```text
//! (type (func (param "g" s64) (result s64)))        ;; type 0
//! (type (func (result s64)))                         ;; type 1
//! (import "biop2p-meter-sync" (func (type 0)))       ;; func 0
//! (import "biop2p-meter-settle" (func (type 0)))     ;; func 1
//! (core func (canon lower (func 0)))                 ;; core func 0
//! (core func (canon lower (func 1)))                 ;; core func 1
//! (core instance (export "sync" (func 0)) (export "settle" (func 1)))  ;; core instance 0
//! (core module $meter ...)                           ;; module 0
//! (core instance (instantiate $meter (with "m" (instance 0))))  ;; core instance 1
//! (alias core export 1 "get" (core func))            ;; core func 2
//! (func (canon lift (core func 2)) (type 1))         ;; func 2
//! (export "biop2p-meter-get" (func 2))               ;; func 3
//! ```
//!
//! `$meter` owns the counter global; its start function sets it from the
//! host (`sync` called first returns the task's budget). Every embedded
//! module imports the counter and `sync` from core instance 1, and calls
//! `sync` before each call into the host, so the host charges host calls
//! and knows the exact count at each, and `settle` after it, which takes
//! what the call cost beyond its flat charge (a tensor operation is charged
//! by its shapes, and its result must not leave guest code running on
//! units that are already spent). The host reads the final count through
//! the lifted `biop2p-meter-get` after a normal return; after a trap, the
//! count at the guest's last host call is what is left (every result a guest
//! can communicate passes through a host call or the return, so nothing it
//! can observe goes uncharged).
//!
//! This costs the least of the ways considered: a host-owned global or
//! memory cannot be imported by a component at all; an accessor alone could
//! not be called during a host call or after a trap; and the extra `sync`
//! call rides on host calls that already cost a microsecond or so, while the
//! hot path in guest code is the same load, subtract, store and branch as in
//! a core module.

use std::collections::{HashMap, HashSet};

use wasm_encoder::reencode::{Error, Reencode, ReencodeComponent, component_utils};
use wasm_encoder::{
    Alias, CanonicalFunctionSection, Component, ComponentAliasSection, ComponentExportKind,
    ComponentExportSection, ComponentImportSection, ComponentTypeRef, ComponentTypeSection,
    ComponentValType, ExportKind, InstanceSection, ModuleArg, PrimitiveValType, RawSection,
};
use wasmparser::{
    CanonicalFunction, ComponentExternalKind, ComponentTypeRef as PTypeRef, ExternalKind, Instance,
    Parser, Payload,
};

use super::module::{Mode, names, rewrite, unique};
use super::{GET_EXPORT, SETTLE_IMPORT, SYNC_IMPORT};

/// Items the prologue adds to each index space (all at the front).
const ADDED_COMPONENT_TYPES: u32 = 2;
const ADDED_COMPONENT_FUNCS: u32 = 4;
const ADDED_CORE_FUNCS: u32 = 3;
const ADDED_CORE_INSTANCES: u32 = 2;
const ADDED_MODULES: u32 = 1;
/// The meter's core instance, which embedded modules import from.
const METER_INSTANCE: u32 = 1;

/// The meter's own core module.
const METER_MODULE: &str = r#"
(module
  (import "m" "sync" (func $sync (param i64) (result i64)))
  (import "m" "settle" (func $settle (param i64) (result i64)))
  (global $g (mut i64) (i64.const 0))
  (func $init (global.set $g (call $sync (i64.const 0))))
  (func (export "get") (result i64) (global.get $g))
  (export "g" (global $g))
  (export "sync" (func $sync))
  (export "settle" (func $settle))
  (start $init))
"#;

/// What the pre-pass learns: per module, which imports reach the host.
struct Plan {
    host_imports: Vec<HashSet<(String, String)>>,
    import_module: String,
}

enum CoreInstance {
    /// Built from exports: the name → is-a-host-function of its functions.
    Bundle(HashMap<String, bool>),
    Instantiated,
}

fn plan(wasm: &[u8]) -> Result<Plan, String> {
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    let mut host_imports: Vec<HashSet<(String, String)>> = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut instances: Vec<CoreInstance> = Vec::new();
    let mut core_funcs: Vec<bool> = Vec::new();
    let mut parser = Parser::new(0);
    let mut rest = wasm;
    loop {
        let (consumed, payload) = match parser.parse(rest, true).map_err(err)? {
            wasmparser::Chunk::Parsed { consumed, payload } => (consumed, payload),
            wasmparser::Chunk::NeedMoreData(_) => return Err("truncated component".into()),
        };
        let skip = match &payload {
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => unchecked_range.len(),
            _ => 0,
        };
        match payload {
            Payload::End(_) => break,
            Payload::ComponentSection { .. } => {
                return Err("nested components are not supported by the meter".into());
            }
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let bytes = &wasm[unchecked_range.clone()];
                let names = names(bytes)?;
                taken.extend(names.import_modules);
                host_imports.push(HashSet::new());
            }
            Payload::ComponentImportSection(r) => {
                for imp in r {
                    let imp = imp.map_err(err)?;
                    if imp.name.0.starts_with("biop2p-meter") {
                        return Err(format!(
                            "the component imports `{}`, a name reserved for the meter",
                            imp.name.0
                        ));
                    }
                    if matches!(imp.ty, PTypeRef::Module(_)) {
                        return Err("imported core modules cannot be metered".into());
                    }
                }
            }
            Payload::ComponentExportSection(r) => {
                for e in r {
                    let e = e.map_err(err)?;
                    if e.name.0.starts_with("biop2p-meter") {
                        return Err(format!(
                            "the component exports `{}`, a name reserved for the meter",
                            e.name.0
                        ));
                    }
                    if e.kind == ComponentExternalKind::Module {
                        return Err("re-exported core modules cannot be metered".into());
                    }
                }
            }
            Payload::ComponentAliasSection(r) => {
                for a in r {
                    match a.map_err(err)? {
                        wasmparser::ComponentAlias::CoreInstanceExport {
                            kind: ExternalKind::Func,
                            instance_index,
                            name,
                        } => {
                            let host = match instances.get(instance_index as usize) {
                                Some(CoreInstance::Bundle(m)) => {
                                    m.get(name).copied().unwrap_or(false)
                                }
                                _ => false,
                            };
                            core_funcs.push(host);
                        }
                        wasmparser::ComponentAlias::InstanceExport {
                            kind: ComponentExternalKind::Module,
                            ..
                        }
                        | wasmparser::ComponentAlias::Outer {
                            kind: wasmparser::ComponentOuterAliasKind::CoreModule,
                            ..
                        } => return Err("aliased core modules cannot be metered".into()),
                        _ => {}
                    }
                }
            }
            Payload::ComponentCanonicalSection(r) => {
                for c in r {
                    match c.map_err(err)? {
                        CanonicalFunction::Lift { .. } => {}
                        CanonicalFunction::Lower { .. } => core_funcs.push(true),
                        _ => core_funcs.push(false),
                    }
                }
            }
            Payload::InstanceSection(r) => {
                for i in r {
                    match i.map_err(err)? {
                        Instance::Instantiate { module_index, args } => {
                            for arg in args.iter() {
                                taken.insert(arg.name.to_string());
                                if let Some(CoreInstance::Bundle(m)) =
                                    instances.get(arg.index as usize)
                                    && let Some(set) = host_imports.get_mut(module_index as usize)
                                {
                                    for (field, host) in m {
                                        if *host {
                                            set.insert((arg.name.to_string(), field.clone()));
                                        }
                                    }
                                }
                            }
                            instances.push(CoreInstance::Instantiated);
                        }
                        Instance::FromExports(exports) => {
                            let m = exports
                                .iter()
                                .map(|e| {
                                    let host = e.kind == ExternalKind::Func
                                        && core_funcs
                                            .get(e.index as usize)
                                            .copied()
                                            .unwrap_or(false);
                                    (e.name.to_string(), host)
                                })
                                .collect();
                            instances.push(CoreInstance::Bundle(m));
                        }
                    }
                }
            }
            _ => {}
        }
        rest = &rest[consumed + skip..];
        if rest.is_empty() {
            break;
        }
    }
    Ok(Plan {
        host_imports,
        import_module: unique("biop2p:meter", &taken),
    })
}

struct Rewriter {
    plan: Plan,
    depth: u32,
    next_module: usize,
}

/// Rewrites a component (see the module docs).
pub(crate) fn rewrite_component(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let plan = plan(wasm)?;
    let mut out = Component::new();
    prologue(&mut out)?;
    let mut r = Rewriter {
        plan,
        depth: 0,
        next_module: 0,
    };
    r.parse_component(&mut out, Parser::new(0), wasm)
        .map_err(|e| format!("{e:?}"))?;
    Ok(out.finish())
}

fn prologue(out: &mut Component) -> Result<(), String> {
    let s64 = ComponentValType::Primitive(PrimitiveValType::S64);
    let mut types = ComponentTypeSection::new();
    types.function().params([("g", s64)]).result(Some(s64));
    types
        .function()
        .params(std::iter::empty::<(&str, ComponentValType)>())
        .result(Some(s64));
    out.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import(SYNC_IMPORT, ComponentTypeRef::Func(0));
    imports.import(SETTLE_IMPORT, ComponentTypeRef::Func(0));
    out.section(&imports);
    let mut canon = CanonicalFunctionSection::new();
    canon.lower(0, []);
    canon.lower(1, []);
    out.section(&canon);
    let mut bundle = InstanceSection::new();
    bundle.export_items([
        ("sync", ExportKind::Func, 0),
        ("settle", ExportKind::Func, 1),
    ]);
    out.section(&bundle);
    let meter = wat::parse_str(METER_MODULE).map_err(|e| e.to_string())?;
    out.section(&RawSection {
        id: wasm_encoder::ComponentSectionId::CoreModule as u8,
        data: &meter,
    });
    let mut inst = InstanceSection::new();
    inst.instantiate(0, [("m", ModuleArg::Instance(0))]);
    out.section(&inst);
    let mut alias = ComponentAliasSection::new();
    alias.alias(Alias::CoreInstanceExport {
        instance: METER_INSTANCE,
        kind: ExportKind::Func,
        name: "get",
    });
    out.section(&alias);
    let mut lift = CanonicalFunctionSection::new();
    lift.lift(2, 1, []);
    out.section(&lift);
    let mut exports = ComponentExportSection::new();
    exports.export(GET_EXPORT, ComponentExportKind::Func, 2, None);
    out.section(&exports);
    Ok(())
}

impl Rewriter {
    fn shift(&self, idx: u32, by: u32) -> u32 {
        if self.depth == 0 { idx + by } else { idx }
    }
}

impl Reencode for Rewriter {
    type Error = String;

    fn function_index(&mut self, func: u32) -> Result<u32, Error<String>> {
        Ok(self.shift(func, ADDED_CORE_FUNCS))
    }
}

impl ReencodeComponent for Rewriter {
    fn component_type_index(&mut self, ty: u32) -> u32 {
        self.shift(ty, ADDED_COMPONENT_TYPES)
    }

    fn component_func_index(&mut self, f: u32) -> u32 {
        self.shift(f, ADDED_COMPONENT_FUNCS)
    }

    fn module_index(&mut self, m: u32) -> u32 {
        self.shift(m, ADDED_MODULES)
    }

    fn instance_index(&mut self, i: u32) -> u32 {
        self.shift(i, ADDED_CORE_INSTANCES)
    }

    fn outer_component_type_index(&mut self, count: u32, ty: u32) -> u32 {
        // An outer alias reaching the top-level component sees its shifted
        // types; one that stays inside a type declaration does not.
        if count == self.depth {
            ty + ADDED_COMPONENT_TYPES
        } else {
            ty
        }
    }

    fn outer_module_index(&mut self, count: u32, module: u32) -> u32 {
        if count == self.depth {
            module + ADDED_MODULES
        } else {
            module
        }
    }

    fn push_depth(&mut self) {
        self.depth += 1;
    }

    fn pop_depth(&mut self) {
        self.depth -= 1;
    }

    fn parse_component_submodule(
        &mut self,
        component: &mut Component,
        _parser: Parser,
        module: &[u8],
    ) -> Result<(), Error<String>> {
        let idx = self.next_module;
        self.next_module += 1;
        let empty = HashSet::new();
        let host_imports = self.plan.host_imports.get(idx).unwrap_or(&empty);
        let bytes = rewrite(
            module,
            &Mode::Embedded {
                import_module: &self.plan.import_module,
                host_imports,
            },
        )
        .map_err(Error::UserError)?;
        component.section(&RawSection {
            id: wasm_encoder::ComponentSectionId::CoreModule as u8,
            data: &bytes,
        });
        Ok(())
    }

    fn parse_instance(
        &mut self,
        instances: &mut InstanceSection,
        instance: wasmparser::Instance<'_>,
    ) -> Result<(), Error<String>> {
        match instance {
            Instance::Instantiate { module_index, args } => {
                let mut new_args: Vec<(&str, ModuleArg)> = args
                    .iter()
                    .map(|a| (a.name, ModuleArg::Instance(self.instance_index(a.index))))
                    .collect();
                let m = self.module_index(module_index);
                let name = self.plan.import_module.clone();
                new_args.push((&name, ModuleArg::Instance(METER_INSTANCE)));
                instances.instantiate(m, new_args);
                Ok(())
            }
            other => component_utils::parse_instance(self, instances, other),
        }
    }
}
