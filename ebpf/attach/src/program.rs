//! The programs of a freshly loaded object, which re-pointing switches attachments to.

use aya::{Ebpf, programs::SchedClassifier};

use crate::{Error, Result};

/// The object's classifier called `name`.
pub(crate) fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Option<&'a mut SchedClassifier> {
    ebpf.program_mut(name)?.try_into().ok()
}

/// The object's classifier called `kernel_name`, or whose name the kernel truncated to it
/// (program names are at most 15 bytes in the kernel), with its full name.
pub(crate) fn classifier_by_kernel_name<'a>(
    ebpf: &'a mut Ebpf,
    kernel_name: &str,
) -> Option<(String, &'a mut SchedClassifier)> {
    if kernel_name.is_empty() {
        return None;
    }
    let (name, prog) = ebpf.programs_mut().find(|(n, _)| {
        *n == kernel_name || (kernel_name.len() == 15 && n.starts_with(kernel_name))
    })?;
    Some((name.to_owned(), prog.try_into().ok()?))
}

/// The id of a loaded program (`name` for the error).
pub(crate) fn id(prog: &SchedClassifier, name: &str) -> Result<u32> {
    prog.info()
        .map(|i| i.id())
        .map_err(|source| Error::program(name, source))
}
