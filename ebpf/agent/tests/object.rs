//! Properties of the built eBPF object that no packet test would notice.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionKind};

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
