//! `sixlane_lb_assigned{pool}`, `sixlane_lb_pending` and `sixlane_lb_leader`, read from the
//! last report and the Lease view at scrape time. Nothing is exported while assignment is off.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, gauge::ConstGauge},
};

use super::report::{LeaseView, Report};

#[derive(Debug)]
pub struct Collector {
    report: Arc<Mutex<Option<Report>>>,
    lease: Option<Arc<Mutex<LeaseView>>>,
}

impl Collector {
    pub fn new(report: Arc<Mutex<Option<Report>>>, lease: Option<Arc<Mutex<LeaseView>>>) -> Self {
        Self { report, lease }
    }
}

impl collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Some(r) = self.report.lock().expect("poisoned").clone() else {
            return Ok(());
        };
        {
            let mut m = encoder.encode_descriptor(
                "lb_assigned",
                "LoadBalancer Services with an address, by pool",
                None,
                MetricType::Gauge,
            )?;
            for p in &r.pools {
                let n = i64::try_from(p.services).unwrap_or(i64::MAX);
                ConstGauge::new(n).encode(m.encode_family(&[("pool", p.name.as_str())])?)?;
            }
        }
        let pending = i64::try_from(r.pending.len()).unwrap_or(i64::MAX);
        ConstGauge::new(pending).encode(encoder.encode_descriptor(
            "lb_pending",
            "LoadBalancer Services of ours without an address (sixlane-agent lb says why)",
            None,
            MetricType::Gauge,
        )?)?;
        let leader = self
            .lease
            .as_ref()
            .is_some_and(|l| l.lock().expect("poisoned").leader);
        ConstGauge::new(i64::from(leader)).encode(encoder.encode_descriptor(
            "lb_leader",
            "1 while this agent holds the LoadBalancer IP assignment Lease and writes Service status",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
