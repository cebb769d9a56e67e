//! Neighbor Discovery metrics, read from the agent's status at scrape time
//! (`Metrics::register_collector`):
//! - `sixlane_ndp_addresses{kind}`: addresses answered for on the uplink (`pod`, `lb`);
//! - `sixlane_ndp_groups`: solicited-node groups joined;
//! - `sixlane_ndp_unsolicited_advertisements_total`;
//! - `sixlane_ndp_peers`: other nodes heard on the link;
//! - `sixlane_ndp_load_balancer_ips{owner}`: the cluster's L2 LoadBalancer IPs answered
//!   `here`, `elsewhere`, or by `none` (no live node has a ready endpoint: alert on it).
//!
//! What the datapath answered, and the invalid solicitations it ignored by reason, are the
//! datapath counters (`sixlane_datapath_packets_total{reason="ndp_..."}`).

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::ops::status::Shared;

#[derive(Debug)]
pub struct NdpCollector {
    pub shared: Arc<Shared>,
}

impl Collector for NdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = self.shared.status().ndp else {
            return Ok(());
        };
        {
            let mut m = encoder.encode_descriptor(
                "ndp_addresses",
                "Addresses the node answers Neighbor Discovery for on its uplink",
                None,
                MetricType::Gauge,
            )?;
            for kind in ["pod", "lb"] {
                let n = s.addresses.iter().filter(|a| a.kind == kind).count();
                ConstGauge::new(n as i64).encode(m.encode_family(&[("kind", kind)])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "ndp_load_balancer_ips",
                "The cluster's L2 LoadBalancer IPs by who answers for them",
                None,
                MetricType::Gauge,
            )?;
            let here = s.addresses.iter().filter(|a| a.kind == "lb").count();
            let none = s
                .load_balancer_ips
                .iter()
                .filter(|r| r.owner.is_none())
                .count();
            let elsewhere = s.load_balancer_ips.len().saturating_sub(here + none);
            for (owner, n) in [("here", here), ("elsewhere", elsewhere), ("none", none)] {
                ConstGauge::new(n as i64).encode(m.encode_family(&[("owner", owner)])?)?;
            }
        }
        ConstGauge::new(s.peers.len() as i64).encode(encoder.encode_descriptor(
            "ndp_peers",
            "Other nodes heard on the uplink's link (their heartbeats)",
            None,
            MetricType::Gauge,
        )?)?;
        let groups = ConstGauge::new(s.groups as i64);
        groups.encode(encoder.encode_descriptor(
            "ndp_groups",
            "Solicited-node multicast groups joined on the uplink",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(s.unsolicited_sent).encode(encoder.encode_descriptor(
            "ndp_unsolicited_advertisements",
            "Unsolicited Neighbor Advertisements sent for addresses newly answered here",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}
