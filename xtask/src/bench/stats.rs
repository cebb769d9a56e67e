//! Medians, ratios, a bootstrap interval, and the printed table.

use std::fmt::Write as _;

use sixlane_testkit::rng::Rng;

use super::{Goal, MAX_STEAL, Metric, Mode, Results, Role, STEAL_RETRIES, Stolen};

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The `q` quantile of `v` by nearest rank (the median for 0.5, averaging the middle two).
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if q == 0.5 {
        return median(v);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let idx = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len().max(1)) - 1;
    s.get(idx).copied()
}

/// 95% bootstrap interval of median(a)/median(b), resampling trials. `None` with fewer than 3
/// trials on either side: an interval from two points is not worth printing.
pub fn ratio_ci(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    if a.len() < 3 || b.len() < 3 {
        return None;
    }
    // Seeded: reruns over the same data print the same interval.
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut ratios = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let ra: Vec<f64> = (0..a.len()).map(|_| rng.pick(a)).collect();
        let rb: Vec<f64> = (0..b.len()).map(|_| rng.pick(b)).collect();
        if let (Some(ma), Some(mb)) = (median(&ra), median(&rb))
            && mb != 0.0
        {
            ratios.push(ma / mb);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let at = |p: f64| ratios[((ratios.len() - 1) as f64 * p) as usize];
    Some((at(0.025), at(0.975)))
}

fn values(results: &Results, mode: &str, metric: &str) -> Vec<f64> {
    results
        .get(mode)
        .map(|trials| {
            trials
                .iter()
                .filter_map(|t| t.get(metric).copied())
                .collect()
        })
        .unwrap_or_default()
}

/// Steal ticks so far (from /proc/stat), to flag noisy trials in the raw log.
pub fn cpu_steal() -> Option<CpuTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// All CPUs' time (`/proc/stat` ticks): stolen by the hypervisor, and in total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTicks {
    pub steal: i64,
    pub total: i64,
}

impl CpuTicks {
    /// Ticks stolen since `earlier`, and their share of all CPU time in between.
    pub fn since(self, earlier: CpuTicks) -> (i64, f64) {
        let steal = self.steal - earlier.steal;
        let total = self.total - earlier.total;
        let share = if total > 0 {
            steal as f64 / total as f64
        } else {
            0.0
        };
        (steal, share)
    }
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal (guest time is
/// already inside user and nice, so it is not added again).
fn parse_cpu_line(line: &str) -> Option<CpuTicks> {
    let mut f = line.split_whitespace();
    if f.next()? != "cpu" {
        return None;
    }
    let v: Vec<i64> = f.take(8).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    (v.len() == 8).then(|| CpuTicks {
        steal: v[7],
        total: v.iter().sum(),
    })
}

fn fmt(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table: one row per metric with each mode's median, then sixlane/limit (with interval)
/// and sixlane/peer for each peer. For lower-is-better metrics the ratio is still
/// sixlane÷other, so below 1 is better there; the header says which way is better. Trials
/// kept although stolen are counted per mode, with a warning under the table.
pub fn table(
    name: &str,
    about: &str,
    modes: &[Mode],
    metrics: &[Metric],
    results: &Results,
    stolen: &Stolen,
    rounds: usize,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## {name}: {about}");
    let trials: Vec<String> = modes
        .iter()
        .map(|m| {
            let mut t = format!(
                "{} {}/{rounds}",
                m.name,
                results.get(m.name).map_or(0, Vec::len)
            );
            if let Some(n) = stolen.get(m.name).filter(|n| **n > 0) {
                t.push_str(&format!(" ({n} stolen)"));
            }
            t
        })
        .collect();
    let _ = writeln!(out, "trials: {}", trials.join(", "));
    let ours: Vec<&Mode> = modes.iter().filter(|m| m.role == Role::Ours).collect();
    let limit = modes.iter().find(|m| m.role == Role::Limit);
    let peers: Vec<&Mode> = modes.iter().filter(|m| m.role == Role::Peer).collect();

    let mut header = vec!["metric".to_owned(), "better".to_owned()];
    header.extend(modes.iter().map(|m| m.name.to_owned()));
    for o in &ours {
        if let Some(l) = limit {
            header.push(format!("{}/{}", o.name, l.name));
        }
        for p in &peers {
            header.push(format!("{}/{}", o.name, p.name));
        }
    }
    let mut rows = vec![header];
    // A metric no mode measured (one only some runs take, `--bpf-stats`) gets no row.
    let measured = |m: &&Metric| {
        modes
            .iter()
            .any(|mode| !values(results, mode.name, m.name).is_empty())
    };
    for m in metrics.iter().filter(measured) {
        let mut row = vec![
            format!("{} ({})", m.name, m.unit),
            if m.higher_is_better {
                "higher"
            } else {
                "lower"
            }
            .to_owned(),
        ];
        for mode in modes {
            row.push(median(&values(results, mode.name, m.name)).map_or("-".into(), fmt));
        }
        for o in &ours {
            let ov = values(results, o.name, m.name);
            let om = median(&ov);
            let mut others: Vec<(&Mode, bool)> = Vec::new();
            if let Some(l) = limit {
                others.push((l, true));
            }
            others.extend(peers.iter().map(|p| (*p, false)));
            for (other, with_ci) in others {
                let xv = values(results, other.name, m.name);
                let cell = match (om, median(&xv)) {
                    (Some(a), Some(b)) if b != 0.0 => {
                        let mut c = format!("{:.3}", a / b);
                        if with_ci && let Some((lo, hi)) = ratio_ci(&ov, &xv) {
                            c.push_str(&format!(" [{lo:.2},{hi:.2}]"));
                        }
                        c
                    }
                    _ => "-".into(),
                };
                row.push(cell);
            }
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    let n: usize = stolen.values().sum();
    if n > 0 {
        let _ = writeln!(
            out,
            "warning: {n} trial(s) kept with more than {:.0}% of the CPU stolen by the \
             hypervisor ({STEAL_RETRIES} repeats ran out): the ratios of those modes measure \
             the VM as much as the datapath; rerun when it is quieter",
            MAX_STEAL * 100.0
        );
    }
    out
}

/// One line per goal: the mode's median and worst trial, and whether the worst meets it.
pub fn goals(goals: &[Goal], metrics: &[Metric], results: &Results) -> String {
    let mut out = String::new();
    for g in goals {
        let metric = metrics.iter().find(|m| m.name == g.metric);
        let unit = metric.map_or("", |m| m.unit);
        let higher = metric.is_some_and(|m| m.higher_is_better);
        let v = values(results, g.mode, g.metric);
        let (worst, op) = if higher {
            (v.iter().copied().min_by(f64::total_cmp), ">=")
        } else {
            (v.iter().copied().max_by(f64::total_cmp), "<=")
        };
        let figure = match (median(&v), worst) {
            (Some(m), Some(w)) => format!(
                "median {}, worst {} of {} trials: {}",
                fmt(m),
                fmt(w),
                v.len(),
                if (higher && w >= g.limit) || (!higher && w <= g.limit) {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            _ => "no trial measured it".to_owned(),
        };
        let _ = writeln!(
            out,
            "goal: {} {} {op} {} {unit}: {figure}",
            g.mode, g.metric, g.limit
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Values;

    #[test]
    fn steal_share_from_proc_stat() {
        let a = parse_cpu_line("cpu  100 0 50 800 10 0 5 35 0 0").unwrap();
        assert_eq!(
            a,
            CpuTicks {
                steal: 35,
                total: 1000
            }
        );
        let b = parse_cpu_line("cpu  200 0 100 1595 10 0 10 85 7 0").unwrap();
        assert_eq!(b.since(a), (50, 0.05));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu  1 2 3"), None);
    }

    #[test]
    fn the_table_counts_trials_kept_stolen() {
        let modes = [
            Mode {
                name: "direct4",
                role: Role::Limit,
                about: "",
            },
            Mode {
                name: "sixlane",
                role: Role::Ours,
                about: "",
            },
        ];
        let metrics = [Metric::new("rate", "conn/s", true)];
        let trial = |v: f64| Values::from([("rate", v)]);
        let results = Results::from([
            ("direct4", vec![trial(10.0), trial(12.0)]),
            ("sixlane", vec![trial(9.0), trial(9.0)]),
        ]);
        let clean = table("x", "y", &modes, &metrics, &results, &Stolen::new(), 2);
        assert!(
            clean.contains("trials: direct4 2/2, sixlane 2/2\n"),
            "{clean}"
        );
        assert!(clean.contains("0.818"), "{clean}");
        assert!(!clean.contains("warning"), "{clean}");
        let stolen = Stolen::from([("sixlane", 1), ("direct4", 0)]);
        let noisy = table("x", "y", &modes, &metrics, &results, &stolen, 2);
        assert!(
            noisy.contains("trials: direct4 2/2, sixlane 2/2 (1 stolen)\n"),
            "{noisy}"
        );
        assert!(noisy.contains("warning: 1 trial(s) kept with more than 2% of the CPU stolen"));
    }

    #[test]
    fn a_goal_is_met_by_the_worst_trial() {
        let metrics = [Metric::new("p99", "ms", false)];
        let trial = |v: f64| Values::from([("p99", v)]);
        let results = Results::from([("ours", vec![trial(90.0), trial(120.0), trial(100.0)])]);
        let goal = |limit| Goal {
            mode: "ours",
            metric: "p99",
            limit,
        };
        assert_eq!(
            goals(&[goal(150.0), goal(110.0)], &metrics, &results),
            "goal: ours p99 <= 150 ms: median 100.0, worst 120.0 of 3 trials: met\n\
             goal: ours p99 <= 110 ms: median 100.0, worst 120.0 of 3 trials: NOT met\n"
        );
        let none = Goal {
            mode: "other",
            ..goal(1.0)
        };
        assert!(goals(&[none], &metrics, &results).ends_with("no trial measured it\n"));
    }

    #[test]
    fn a_higher_is_better_goal_is_a_floor_met_by_the_lowest_trial() {
        let metrics = [Metric::new("answered", "%", true)];
        let trial = |v: f64| Values::from([("answered", v)]);
        let results = Results::from([("ours", vec![trial(100.0), trial(95.0)])]);
        let goal = |limit| Goal {
            mode: "ours",
            metric: "answered",
            limit,
        };
        assert_eq!(
            goals(&[goal(90.0), goal(100.0)], &metrics, &results),
            "goal: ours answered >= 90 %: median 97.5, worst 95.0 of 2 trials: met\n\
             goal: ours answered >= 100 %: median 97.5, worst 95.0 of 2 trials: NOT met\n"
        );
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 1.0), Some(100.0));
        assert_eq!(quantile(&v, 0.5), Some(50.5));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.99), None);
    }

    #[test]
    fn ratio_interval_brackets_the_ratio() {
        let a = [10.0, 11.0, 9.0, 10.5, 9.5];
        let b = [20.0, 21.0, 19.0, 20.5, 19.5];
        let (lo, hi) = ratio_ci(&a, &b).unwrap();
        assert!(lo <= 0.5 && 0.5 <= hi, "{lo} {hi}");
        assert!(hi - lo < 0.2);
        assert_eq!(ratio_ci(&a[..2], &b), None);
    }
}
