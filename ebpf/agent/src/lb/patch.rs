//! What the Lease holder writes, computed without I/O: for every Service whose status does not
//! say what the assignment says, a [`StatusUpdate`]; the server-side apply document for it
//! ([`apply_body`]); and the Event of a Service that became pending ([`event`]).
//!
//! The status subresource is written with server-side apply under the field manager
//! [`FIELD_MANAGER`]: `loadBalancer.ingress` (an atomic list) and the one condition
//! [`CONDITION`] (a map-keyed list entry) are ours, other conditions stay their writers'. The
//! document carries the `resourceVersion` the update was computed from, so a Service that has
//! changed since is not overwritten with a stale decision (409; the next reconcile decides
//! again). A Service that stops being ours (type or class changed) gets an apply without those
//! fields, which removes what we wrote.

use std::{collections::BTreeMap, net::Ipv6Addr};

use k8s_openapi::{
    api::{core::v1::ObjectReference, core::v1::Service as K8sService, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time},
    jiff::Timestamp,
};
use serde_json::{Value, json};

use super::{
    assign::{Outcome, Pool, holders, pool_of},
    input::{ingress_ips, is_ours},
};
use crate::{model::ServiceId, source::store::ObjKey};

/// The condition sixlane keeps on its Services.
pub const CONDITION: &str = "sixlane.io/LoadBalancerIPAssigned";
/// The server-side apply field manager (and the Events' reporting controller).
pub const FIELD_MANAGER: &str = "sixlane-lb-ipam";
/// The condition's reason when an address is assigned.
pub const ASSIGNED: &str = "IPAssigned";

/// A status write for one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub id: ServiceId,
    pub uid: Option<String>,
    /// The Service's version this was computed from (the write's precondition).
    pub resource_version: Option<String>,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Ours: its address (none while pending) and the condition saying so.
    Set {
        address: Option<Ipv6Addr>,
        condition: Condition,
        /// Became pending, or pending for another reason: tell the user with an Event.
        event: bool,
    },
    /// No longer ours but carrying what we wrote: remove it.
    Release,
}

/// [`CONDITION`] as it should read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub assigned: bool,
    pub reason: String,
    pub message: String,
    pub generation: Option<i64>,
    /// The current condition's transition time when its status stays the same.
    pub since: Option<Timestamp>,
}

/// The updates that bring the status of `services` in line with `outcomes` (an outcome for
/// every Service of ours): only Services whose status differs.
pub fn updates(
    services: &BTreeMap<ObjKey, K8sService>,
    class: &str,
    outcomes: &BTreeMap<ServiceId, Outcome>,
    pools: &[Pool],
) -> Vec<StatusUpdate> {
    let by_addr = holders(outcomes);
    let mut out = Vec::new();
    for (key, k) in services {
        let id = ServiceId {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        let current = current_condition(k);
        let change = match outcomes.get(&id) {
            Some(o) if is_ours(k, class) => {
                let (address, reason, message) = match o {
                    Outcome::Assigned(a) => {
                        let pool = pool_of(pools, *a).map_or("?", |p| p.name.as_str());
                        let mut m = format!("{a} from pool {pool}");
                        let others: Vec<String> = by_addr[a]
                            .iter()
                            .filter(|o| **o != id)
                            .map(ToString::to_string)
                            .collect();
                        if !others.is_empty() {
                            m.push_str(&format!(", shared with {}", others.join(", ")));
                        }
                        (Some(*a), ASSIGNED.to_owned(), m)
                    }
                    Outcome::Pending(r) => (None, r.code().to_owned(), r.to_string()),
                };
                let condition = Condition {
                    assigned: address.is_some(),
                    reason,
                    message,
                    generation: k.metadata.generation,
                    since: current
                        .filter(|c| (c.status == "True") == address.is_some())
                        .map(|c| c.last_transition_time.0),
                };
                let same_condition = current.is_some_and(|c| {
                    c.status == if condition.assigned { "True" } else { "False" }
                        && c.reason == condition.reason
                        && c.message == condition.message
                });
                let same_generation =
                    current.is_some_and(|c| c.observed_generation == condition.generation);
                let ingress = ingress_ips(k);
                let ingress_entries = ingress_count(k);
                let same_address = match address {
                    Some(a) => ingress == [a] && ingress_entries == 1,
                    None => ingress_entries == 0,
                };
                if same_condition && same_generation && same_address {
                    continue;
                }
                Change::Set {
                    address,
                    event: !condition.assigned && !same_condition,
                    condition,
                }
            }
            _ if current.is_some() => Change::Release,
            _ => continue,
        };
        out.push(StatusUpdate {
            id,
            uid: k.metadata.uid.clone(),
            resource_version: k.metadata.resource_version.clone(),
            change,
        });
    }
    out
}

fn current_condition(
    k: &K8sService,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    k.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION)
}

fn ingress_count(k: &K8sService) -> usize {
    k.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map_or(0, Vec::len)
}

/// The server-side apply document of `u` for the status subresource.
pub fn apply_body(u: &StatusUpdate, now: Timestamp) -> Value {
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": u.id.name, "namespace": u.id.namespace},
        "status": {},
    });
    if let Some(rv) = &u.resource_version {
        body["metadata"]["resourceVersion"] = json!(rv);
    }
    if let Change::Set {
        address, condition, ..
    } = &u.change
    {
        let ingress: Vec<Value> = address.iter().map(|a| json!({"ip": a})).collect();
        let mut c = json!({
            "type": CONDITION,
            "status": if condition.assigned { "True" } else { "False" },
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": Time(condition.since.unwrap_or(now)),
        });
        if let Some(g) = condition.generation {
            c["observedGeneration"] = json!(g);
        }
        body["status"] = json!({"loadBalancer": {"ingress": ingress}, "conditions": [c]});
    }
    body
}

/// The Warning Event (`events.k8s.io/v1`) telling the user why `u`'s Service is pending, if
/// it became so. `instance`: the reporting agent (its node name).
pub fn event(u: &StatusUpdate, instance: &str, now: Timestamp) -> Option<Event> {
    let Change::Set {
        condition,
        event: true,
        ..
    } = &u.change
    else {
        return None;
    };
    Some(Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", u.id.name)),
            namespace: Some(u.id.namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some("Warning".into()),
        reason: Some(condition.reason.clone()),
        note: Some(condition.message.clone()),
        action: Some("AssignLoadBalancerIP".into()),
        reporting_controller: Some(format!("sixlane.io/{FIELD_MANAGER}")),
        reporting_instance: Some(instance.into()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(u.id.name.clone()),
            namespace: Some(u.id.namespace.clone()),
            uid: u.uid.clone(),
            resource_version: u.resource_version.clone(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
