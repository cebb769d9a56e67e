//! TCP MSS clamping on SYNs crossing the translator: IPv4 headers are 20 bytes smaller than
//! IPv6 ones, so a segment sized for one side's MTU can exceed the other's. Clamping the MSS
//! option keeps TCP from relying on Packet Too Big alone (which filtered ICMP can black-hole).

use aya_ebpf::programs::TcContext;
use sixlane_common::metrics::Reason;

use crate::{checksum, packet, verdict::Res};

const TCP_HLEN: usize = 20;
const OPT_MSS: u8 = 2;

/// Lowers the MSS option of the TCP header at `l4` (header length `hlen`) to `max`, updating
/// the checksum. Leaves the segment alone if it has no MSS option or a smaller one.
#[inline(always)]
pub fn clamp(ctx: &TcContext, l4: usize, hlen: u16, max: u32) -> Res<()> {
    if clamp_inner(ctx, l4 as u32, u32::from(hlen), max) {
        Ok(())
    } else {
        Err(Reason::Nat64Error)
    }
}

/// Out of line (option walk with its buffer). False when rewriting failed.
#[inline(never)]
fn clamp_inner(ctx: &TcContext, l4: u32, hlen: u32, max: u32) -> bool {
    walk(ctx, l4 as usize, hlen as u16, max).is_ok()
}

#[inline(always)]
fn walk(ctx: &TcContext, l4: usize, hlen: u16, max: u32) -> Res<()> {
    let hlen = usize::from(hlen);
    if hlen <= TCP_HLEN || max == 0 || max > 0xffff {
        return Ok(());
    }
    // Every mainstream stack (Linux, Windows, the BSDs, macOS) sends MSS as the first option of
    // a SYN; only that position is examined, which keeps the verifier's work constant. A SYN
    // with MSS elsewhere is left as is (Packet Too Big still covers it).
    let Ok(opt) = packet::load::<[u8; 4]>(ctx, l4 + TCP_HLEN) else {
        return Ok(());
    };
    if opt[0] != OPT_MSS || opt[1] != 4 {
        return Ok(());
    }
    let mss = u16::from_be_bytes([opt[2], opt[3]]);
    if u32::from(mss) > max {
        let new = (max as u16).to_be();
        let old = u16::from_ne_bytes([opt[2], opt[3]]);
        checksum::l4_replace(ctx, l4 + 16, u64::from(old), u64::from(new), 2)?;
        packet::store(ctx, l4 + TCP_HLEN + 2, &new)?;
    }
    Ok(())
}
