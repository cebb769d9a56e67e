//! BGP metrics, read from the routing subsystem's last status at scrape time
//! (`Metrics::register_collector`):
//! - `sixlane_bgp_session_up{peer}`: 1 while the session is established;
//! - `sixlane_bgp_session_down_reason{peer,reason}`: 1 for a peer that is down, `reason` saying
//!   why (`refused`, `unreachable`, `peer_as`, `bird_down`, ...: [`DownReason`]);
//! - `sixlane_bgp_announced_prefixes{kind}`, `sixlane_bgp_received_prefixes{peer}`,
//!   `sixlane_bgp_filtered_prefixes{peer}` (sent by the peer, refused by `bgp.import`);
//! - `sixlane_bird_up`: BIRD answers on its control socket;
//! - `sixlane_bird_restarts_total`: times the agent started BIRD again after it died.
//!
//! [`DownReason`]: super::status::DownReason

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use super::status::BgpStatus;

#[derive(Debug)]
pub struct BgpCollector {
    pub status: Arc<Mutex<BgpStatus>>,
}

impl Collector for BgpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.status.lock().expect("poisoned").clone();
        let gauge = |v: bool| ConstGauge::new(i64::from(v));
        {
            let mut m = encoder.encode_descriptor(
                "bgp_session_up",
                "1 while the BGP session with the peer is established",
                None,
                MetricType::Gauge,
            )?;
            for p in &s.peers {
                gauge(p.up).encode(m.encode_family(&[("peer", p.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "bgp_session_down_reason",
                "1 for a peer whose session is not established, by why",
                None,
                MetricType::Gauge,
            )?;
            for p in &s.peers {
                if let Some(r) = p.down_reason {
                    let labels = [("peer", p.name.as_str()), ("reason", r.as_str())];
                    gauge(true).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut by_kind: BTreeMap<&str, i64> = BTreeMap::new();
            for a in &s.announced {
                *by_kind.entry(a.kind.as_str()).or_default() += 1;
            }
            let mut m = encoder.encode_descriptor(
                "bgp_announced_prefixes",
                "Prefixes this node announces, by kind",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in by_kind {
                ConstGauge::new(n).encode(m.encode_family(&[("kind", kind)])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "bgp_received_prefixes",
                "Prefixes accepted from the peer",
                None,
                MetricType::Gauge,
            )?;
            for p in &s.peers {
                ConstGauge::new(p.received.len() as i64)
                    .encode(m.encode_family(&[("peer", p.name.as_str())])?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "bgp_filtered_prefixes",
                "Prefixes from the peer that bgp.import refused",
                None,
                MetricType::Gauge,
            )?;
            for p in &s.peers {
                ConstGauge::new(p.filtered as i64)
                    .encode(m.encode_family(&[("peer", p.name.as_str())])?)?;
            }
        }
        gauge(s.bird.answering).encode(encoder.encode_descriptor(
            "bird_up",
            "1 while BIRD answers on its control socket",
            None,
            MetricType::Gauge,
        )?)?;
        let restarts = s.bird.process.as_ref().map_or(0, |p| p.restarts);
        ConstCounter::new(restarts).encode(encoder.encode_descriptor(
            "bird_restarts",
            "Times the agent started BIRD again after it died",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ops::metrics::Metrics,
        routing::status::{Announced, DownReason, PeerStatus, ProcessState},
    };

    #[test]
    fn exposition() {
        let status = Arc::new(Mutex::new(BgpStatus::default()));
        let m = Metrics::new("node-a", None);
        m.register_collector(Box::new(BgpCollector {
            status: status.clone(),
        }));
        {
            let mut s = status.lock().unwrap();
            s.bird.answering = true;
            s.bird.process = Some(ProcessState {
                restarts: 2,
                ..Default::default()
            });
            s.peers = vec![
                PeerStatus {
                    name: "tor1".into(),
                    up: true,
                    received: vec!["fd00:10:244:2::/64".parse().unwrap()],
                    filtered: 3,
                    ..Default::default()
                },
                PeerStatus {
                    name: "tor2".into(),
                    down_reason: Some(DownReason::PeerAs),
                    ..Default::default()
                },
            ];
            s.announced = [
                "podCIDR",
                "clusterIPRange",
                "loadBalancerIP",
                "loadBalancerIP",
            ]
            .iter()
            .enumerate()
            .map(|(i, k)| Announced {
                prefix: format!("fd00:{i}::/64").parse().unwrap(),
                kind: (*k).into(),
            })
            .collect();
        }
        let text = m.encode();
        for want in [
            "sixlane_bgp_session_up{peer=\"tor1\"} 1",
            "sixlane_bgp_session_up{peer=\"tor2\"} 0",
            "sixlane_bgp_session_down_reason{peer=\"tor2\",reason=\"peer_as\"} 1",
            "sixlane_bgp_announced_prefixes{kind=\"loadBalancerIP\"} 2",
            "sixlane_bgp_announced_prefixes{kind=\"podCIDR\"} 1",
            "sixlane_bgp_received_prefixes{peer=\"tor1\"} 1",
            "sixlane_bgp_filtered_prefixes{peer=\"tor1\"} 3",
            "sixlane_bird_up 1",
            "sixlane_bird_restarts_total 2",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("reason=\"peer_as\"} 0"), "{text}");
        assert!(
            !text.contains("sixlane_bgp_session_down_reason{peer=\"tor1\""),
            "an established peer has no down reason:\n{text}"
        );
    }
}
