//! Table-driven `BPF_PROG_TEST_RUN` fixtures for tc programs.
//!
//! A fixture is: map setup → input packet (and optional `__sk_buff` context) → expected verdict
//! and expected output packet → optional checks on maps afterwards. Every changed output packet
//! has its checksums verified by [`crate::packet::verify_checksums`], independently of the
//! program. [`run`] executes a whole table and reports every failure at once.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};

use crate::packet;

/// tc verdicts as `BPF_PROG_TEST_RUN` reports them.
pub mod verdict {
    /// TC_ACT_UNSPEC, which TCX treats as "next program".
    pub const NEXT: i32 = -1;
    pub const OK: i32 = 0;
    pub const SHOT: i32 = 2;
    pub const PIPE: i32 = 3;
    pub const REDIRECT: i32 = 7;
}

/// A step run against the object before or after the program (map setup or map checks).
pub type Hook = Box<dyn Fn(&mut Ebpf) -> Result<(), String>>;

/// What the output packet must be.
#[derive(Debug, Clone)]
pub enum Output {
    /// Byte-identical to the input.
    Unchanged,
    /// Byte-identical to this packet (checksums verified independently too).
    Exact(Vec<u8>),
    /// Not checked (a dropped packet, for instance).
    Ignore,
}

/// The writable part of `struct __sk_buff` for test runs: the kernel rejects a context with any
/// other field set. Laid out like the UAPI struct (192 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SkBuffCtx {
    _r0: [u32; 2],
    pub mark: u32,
    _r1: [u32; 5],
    pub priority: u32,
    pub ingress_ifindex: u32,
    pub ifindex: u32,
    _r2: u32,
    pub cb: [u32; 5],
    _r3: [u32; 21],
    pub tstamp: u64,
    pub wire_len: u32,
    pub gso_segs: u32,
    _r4: u64,
    pub gso_size: u32,
    _r5: u32,
    pub hwtstamp: u64,
}
const _: () = assert!(std::mem::size_of::<SkBuffCtx>() == 192);

impl SkBuffCtx {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C), no padding (asserted size equals the sum of fields), plain integers.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }
}

/// One row of a fixture table.
pub struct Fixture {
    pub name: String,
    pub program: String,
    pub input: Vec<u8>,
    pub ctx: Option<SkBuffCtx>,
    pub setup: Vec<Hook>,
    pub verdict: i32,
    pub output: Output,
    pub checks: Vec<Hook>,
}

impl Fixture {
    /// A fixture running `program` on `input`, expecting `TC_ACT_UNSPEC` and an unchanged
    /// packet until told otherwise.
    pub fn new(name: impl Into<String>, program: impl Into<String>, input: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            input,
            ctx: None,
            setup: Vec::new(),
            verdict: verdict::NEXT,
            output: Output::Unchanged,
            checks: Vec::new(),
        }
    }

    pub fn ctx(mut self, ctx: SkBuffCtx) -> Self {
        self.ctx = Some(ctx);
        self
    }

    pub fn setup(mut self, f: impl Fn(&mut Ebpf) -> Result<(), String> + 'static) -> Self {
        self.setup.push(Box::new(f));
        self
    }

    pub fn verdict(mut self, v: i32) -> Self {
        self.verdict = v;
        self
    }

    pub fn output(mut self, o: Output) -> Self {
        self.output = o;
        self
    }

    pub fn check(mut self, f: impl Fn(&mut Ebpf) -> Result<(), String> + 'static) -> Self {
        self.checks.push(Box::new(f));
        self
    }
}

/// The result of one test run.
#[derive(Debug)]
pub struct RunResult {
    pub verdict: i32,
    pub output: Vec<u8>,
}

/// Runs `program` once on `input` (and `ctx`).
pub fn test_run(
    ebpf: &mut Ebpf,
    program: &str,
    input: &[u8],
    ctx: Option<&SkBuffCtx>,
) -> Result<RunResult, String> {
    let prog: &SchedClassifier = ebpf
        .program(program)
        .ok_or_else(|| format!("no program {program} in the object"))?
        .try_into()
        .map_err(|e| format!("{program} is not a tc program: {e}"))?;
    // Room for programs that grow the packet (NAT64 4→6, ICMP errors quoting the packet).
    let mut out = vec![0u8; input.len() + 512];
    let mut ctx_out = [0u8; std::mem::size_of::<SkBuffCtx>()];
    let ctx_bytes = ctx.map(SkBuffCtx::as_bytes);
    let opts = TestRunOptions {
        data_in: Some(input),
        data_out: Some(&mut out),
        ctx_in: ctx_bytes,
        ctx_out: ctx_bytes.map(|_| &mut ctx_out[..]),
        ..TestRunOptions::default()
    };
    let res = prog.test_run(opts).map_err(|e| {
        let mut msg = format!("BPF_PROG_TEST_RUN of {program}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    })?;
    out.truncate(res.data_size_out as usize);
    Ok(RunResult {
        verdict: res.return_value as i32,
        output: out,
    })
}

fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, chunk) in b.chunks(16).enumerate() {
        s.push_str(&format!("    {:04x}:", i * 16));
        for x in chunk {
            s.push_str(&format!(" {x:02x}"));
        }
        s.push('\n');
    }
    s
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn run_one(ebpf: &mut Ebpf, f: &Fixture) -> Result<(), String> {
    for s in &f.setup {
        s(ebpf).map_err(|e| format!("setup: {e}"))?;
    }
    let r = test_run(ebpf, &f.program, &f.input, f.ctx.as_ref())?;
    let mut errs = Vec::new();
    if r.verdict != f.verdict {
        errs.push(format!("verdict {} (want {})", r.verdict, f.verdict));
    }
    let want = match &f.output {
        Output::Unchanged => Some(&f.input),
        Output::Exact(p) => Some(p),
        Output::Ignore => None,
    };
    if let Some(want) = want
        && let Some(at) = first_diff(&r.output, want)
    {
        errs.push(format!(
            "output differs at byte {at}\n  got:  {}\n  want: {}\n  got bytes:\n{}  want bytes:\n{}",
            packet::describe(&r.output),
            packet::describe(want),
            hex(&r.output),
            hex(want)
        ));
    }
    if matches!(f.output, Output::Exact(_))
        && let Err(e) = packet::verify_checksums(&r.output)
    {
        errs.push(format!(
            "output checksums: {e} ({})",
            packet::describe(&r.output)
        ));
    }
    for c in &f.checks {
        if let Err(e) = c(ebpf) {
            errs.push(format!("check: {e}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n  "))
    }
}

/// Runs every fixture in order (setups may build on earlier rows, e.g. a SYN then its reply) and
/// panics listing all failures.
pub fn run(ebpf: &mut Ebpf, fixtures: impl IntoIterator<Item = Fixture>) {
    let mut failures = Vec::new();
    let mut n = 0;
    for f in fixtures {
        n += 1;
        if let Err(e) = run_one(ebpf, &f) {
            failures.push(format!("[{}] {}:\n  {e}", f.program, f.name));
        }
    }
    assert!(n > 0, "empty fixture table");
    assert!(
        failures.is_empty(),
        "{} of {n} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
