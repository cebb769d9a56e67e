//! `sixlane-agent lb`: the pools and their use, the assignments, the pending Services and
//! why, and who writes — from the agent's last status (`<stateDir>/status.json`).

use std::{fmt::Write as _, path::PathBuf};

use super::report::{LeaseView, Report, Writer};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's state directory (holds status.json).
    #[arg(long, default_value = "/var/lib/sixlane")]
    pub state_dir: PathBuf,
}

/// Prints `report` (`None`: assignment is off) as a table or JSON.
pub fn print(report: Option<&Report>, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(report));
    }
    Ok(())
}

/// Who writes, as one line.
pub fn writer_line(w: &Writer) -> String {
    match w {
        Writer::Static => "static manifests: assignments go into this node's datapath".into(),
        Writer::Lease(LeaseView {
            lease,
            identity,
            leader,
            holder,
            error,
        }) => {
            let mut s = match (leader, holder) {
                (true, _) => format!("this agent ({identity}) holds Lease {lease} and writes"),
                (false, Some(h)) => format!("{h} holds Lease {lease} and writes"),
                (false, None) => format!("nobody holds Lease {lease} yet"),
            };
            if let Some(e) = error {
                let _ = write!(s, "; last Lease error: {e}");
            }
            s
        }
    }
}

fn text(report: Option<&Report>) -> String {
    let Some(r) = report else {
        return "LoadBalancer IP assignment is off (loadBalancer.enabled)\n".into();
    };
    let mut out = String::new();
    let _ = writeln!(out, "class    {} (or none)", r.class);
    let _ = writeln!(out, "writer   {}", writer_line(&r.writer));
    let _ = writeln!(
        out,
        "\n{:<16} {:>22} {:>6} {:>8} {:<4}  BLOCKS",
        "POOL", "SIZE", "USED", "SERVICES", "AUTO"
    );
    for p in &r.pools {
        let _ = writeln!(
            out,
            "{:<16} {:>22} {:>6} {:>8} {:<4}  {}",
            p.name,
            p.size,
            p.used,
            p.services,
            if p.auto_assign { "yes" } else { "no" },
            p.blocks.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<40} {:<40} {:<16} SHARED WITH",
        "SERVICE", "ADDRESS", "POOL"
    );
    for a in &r.assigned {
        let _ = writeln!(
            out,
            "{:<40} {:<40} {:<16} {}",
            a.service,
            a.address.to_string(),
            a.pool,
            a.shared_with.join(", ")
        );
    }
    if !r.pending.is_empty() {
        let _ = writeln!(out, "\n{:<40} {:<20} WHY", "PENDING", "REASON");
        for p in &r.pending {
            let _ = writeln!(out, "{:<40} {:<20} {}", p.service, p.reason, p.message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        lb::assign::{Block, Outcome, Pool, Reason},
        model::ServiceId,
    };

    #[test]
    fn the_table_shows_pools_assignments_and_why_a_service_is_pending() {
        let pools = vec![Pool {
            name: "public".into(),
            blocks: vec![Block::from_cidr("2001:db8::/120".parse().unwrap())],
            namespaces: vec![],
            selector: BTreeMap::new(),
            auto_assign: true,
        }];
        let id = |n: &str| ServiceId {
            namespace: "x".into(),
            name: n.into(),
        };
        let outcomes = BTreeMap::from([
            (id("a"), Outcome::Assigned("2001:db8::1".parse().unwrap())),
            (id("b"), Outcome::Assigned("2001:db8::1".parse().unwrap())),
            (
                id("c"),
                Outcome::Pending(Reason::Exhausted(vec!["public".into()])),
            ),
        ]);
        let r = Report::new("sixlane.io/lb", &pools, &outcomes, Writer::Static);
        let t = text(Some(&r));
        assert!(t.contains("static manifests"), "{t}");
        let pool_row = t.lines().find(|l| l.starts_with("public")).unwrap();
        let cols: Vec<&str> = pool_row.split_whitespace().collect();
        assert_eq!(cols, ["public", "255", "1", "2", "yes", "2001:db8::/120"]);
        assert!(
            t.lines()
                .any(|l| l.starts_with("x/a") && l.contains("2001:db8::1") && l.ends_with("x/b")),
            "{t}"
        );
        assert!(
            t.lines().any(|l| l.starts_with("x/c")
                && l.contains("PoolExhausted")
                && l.contains("no free address left in pool public")),
            "{t}"
        );
        assert!(text(None).contains("off"));
        let lease = Writer::Lease(LeaseView {
            lease: "kube-system/sixlane-lb-ipam".into(),
            identity: "node-a".into(),
            leader: false,
            holder: Some("node-b".into()),
            error: None,
        });
        assert_eq!(
            writer_line(&lease),
            "node-b holds Lease kube-system/sixlane-lb-ipam and writes"
        );
    }
}
