//! The floor: a plain BIRD announcing the routes as static routes, reconfigured over its
//! control socket (what `birdc configure` does).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use sixlane_testkit::{
    bird::{Bird, BirdConfig, Peer},
    lan::Lan,
};

use super::{NODE, NODE_ASN, ROUTER_ASN, Speaker};

pub struct Floor {
    bird: Bird,
    node: Ipv6Addr,
    router: Ipv6Addr,
}

impl Floor {
    pub fn start(lab: &Lan) -> anyhow::Result<Self> {
        let node = lab.host(NODE);
        let config = bird_config(node.addr(), lab.router_addr(), &[]);
        Ok(Self {
            bird: Bird::start(node.ns(), config)?,
            node: node.addr(),
            router: lab.router_addr(),
        })
    }

    /// Makes `routes` exactly what BIRD announces.
    fn announce(&mut self, routes: &[Ipv6Net]) -> anyhow::Result<()> {
        let config = bird_config(self.node, self.router, routes);
        self.bird.configure(config)?;
        Ok(())
    }
}

fn bird_config(node: Ipv6Addr, router: Ipv6Addr, routes: &[Ipv6Net]) -> BirdConfig {
    BirdConfig::new(Ipv4Addr::new(10, 0, 0, 2), NODE_ASN, node)
        .peer(Peer::new(router, ROUTER_ASN))
        .routes(routes.iter().copied())
}

impl Speaker for Floor {
    fn one(&mut self, route: Ipv6Net, up: bool) -> anyhow::Result<()> {
        let routes = [route];
        self.announce(if up { &routes } else { &[] })
    }

    fn batch(&mut self, routes: &[Ipv6Net], up: bool) -> anyhow::Result<()> {
        self.announce(if up { routes } else { &[] })
    }

    /// Restarted plainly, as a service manager would: no graceful-restart recovery (`bird -R`),
    /// so the router drops the stale routes when the new BIRD's session opens.
    fn crash(&mut self, lab: &Lan) -> anyhow::Result<()> {
        self.bird.crash_and_restart(lab.host(NODE).ns(), false)?;
        Ok(())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        Ok(self.bird.check_alive()?)
    }
}
