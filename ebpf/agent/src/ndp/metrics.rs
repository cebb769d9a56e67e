//! Neighbor Discovery metrics, read from the agent's status at scrape time
//! (`Metrics::register_collector`):
//! - `sixlane_ndp_addresses{kind}`: addresses answered for on the uplink;
//! - `sixlane_ndp_groups`: solicited-node groups joined;
//! - `sixlane_ndp_unsolicited_advertisements_total`.
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
            let pods = s.addresses.iter().filter(|a| a.kind == "pod").count();
            ConstGauge::new(pods as i64).encode(m.encode_family(&[("kind", "pod")])?)?;
        }
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
