//! Properties of the built eBPF object that no packet test would notice.

use std::collections::BTreeMap;

use aya_obj::{EbpfSectionKind, maps::PinningType};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionKind};
use sixlane_common::layout;

/// The datapath calls none of compiler_builtins' `memcpy`, `memmove`, `memset` or `memcmp`: in
/// BPF they are byte-at-a-time loops behind a call. An innocent-looking struct assignment or
/// zeroing becomes one (the header copies of every translated packet were about a tenth of the
/// NAT64 programs' time); `ebpf/programs/src/mem.rs` has the ways around them.
#[test]
fn the_datapath_calls_no_byte_loop_memory_functions() {
    let file = object::File::parse(sixlane_agent::object()).expect("parse the eBPF object");
    let banned = ["memcpy", "memmove", "memset", "memcmp"];
    let mut calls = Vec::new();
    let mut code_sections = 0;
    for section in file.sections() {
        if section.kind() != SectionKind::Text {
            continue;
        }
        code_sections += 1;
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(idx) = reloc.target() else {
                continue;
            };
            let target = file.symbol_by_index(idx).expect("relocation symbol");
            let name = target.name().unwrap_or_default();
            if !banned.contains(&name) {
                continue;
            }
            // The function the call is in: the symbol of this section that spans the offset.
            let caller = file
                .symbols()
                .filter(|s| s.section_index() == Some(section.index()) && s.size() > 0)
                .find(|s| s.address() <= offset && offset < s.address() + s.size())
                .and_then(|s| s.name().ok().map(str::to_owned))
                .unwrap_or_else(|| format!("{}+{offset:#x}", section.name().unwrap_or("?")));
            calls.push(format!("{caller} calls {name}"));
        }
    }
    assert!(code_sections > 1, "no program sections found in the object");
    assert!(
        calls.is_empty(),
        "byte-loop memory calls in the datapath:\n{}",
        calls.join("\n")
    );
}

/// The maps the programs declare (by literal name, in `#[map(name = "...")]`) are exactly the
/// layout's (`layout::MAPS`), each of the type and pinning the layout records: the loader, the
/// CLI and the tests find maps by the layout's names, and a pinned map's name and type are
/// part of what an upgrade keeps.
#[test]
fn the_object_declares_exactly_the_layouts_maps() {
    let obj = aya_obj::Object::parse(sixlane_agent::object()).expect("parse the eBPF object");
    let declared: BTreeMap<&str, (u32, bool)> = obj
        .maps
        .iter()
        // Data sections (.rodata, .bss) become maps of their own; only declared maps count.
        .filter(|(_, m)| m.section_kind() == EbpfSectionKind::Maps)
        .map(|(name, m)| {
            let pinned = matches!(m.pinning(), PinningType::ByName);
            (name.as_str(), (m.map_type(), pinned))
        })
        .collect();
    assert!(declared.len() > 1, "no maps found in the object");
    let mut errors = Vec::new();
    for spec in layout::MAPS {
        let want = (spec.kind as u32, spec.pinned);
        match declared.get(spec.name) {
            None => errors.push(format!(
                "{} is in the layout but not in the object",
                spec.name
            )),
            Some(&have) if have != want => errors.push(format!(
                "{}: the object declares type {} pinned {}, the layout {:?} pinned {}",
                spec.name, have.0, have.1, spec.kind, spec.pinned
            )),
            Some(_) => {}
        }
    }
    for name in declared.keys() {
        if !layout::MAPS.iter().any(|m| m.name == *name) {
            errors.push(format!("{name} is in the object but not in the layout"));
        }
    }
    assert!(errors.is_empty(), "maps:\n{}", errors.join("\n"));
}
