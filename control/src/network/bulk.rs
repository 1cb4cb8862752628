//! Neutron's bulk create (`{"networks": [...]}`, `{"subnets": [...]}`, `{"ports": [...]}`):
//! all the items or none. Made the way Neutron emulates bulk for plugins without a native
//! one: each item is created in order through the same path as a single create (so every
//! check and side effect is the same), and when one fails, those made before it are deleted
//! again, last first, and the failure is the answer.

use super::networks::NewNetwork;
use super::ports::NewPort;
use super::store::{Network, Port, Subnet};
use super::subnets::NewSubnet;
use super::{NetworkError, NetworkService};
use crate::context::RequestContext;

impl NetworkService {
    pub fn create_networks(
        &self,
        ctx: &RequestContext,
        reqs: Vec<NewNetwork>,
    ) -> Result<Vec<Network>, NetworkError> {
        all_or_none(
            reqs,
            |req| self.create_network(ctx, req),
            |n: &Network| self.delete_network(ctx, &n.id),
        )
    }

    pub fn create_subnets(
        &self,
        ctx: &RequestContext,
        reqs: Vec<NewSubnet>,
    ) -> Result<Vec<Subnet>, NetworkError> {
        all_or_none(
            reqs,
            |req| self.create_subnet(ctx, req),
            |s: &Subnet| self.delete_subnet(ctx, &s.id),
        )
    }

    pub fn create_ports(
        &self,
        ctx: &RequestContext,
        reqs: Vec<NewPort>,
    ) -> Result<Vec<Port>, NetworkError> {
        all_or_none(
            reqs,
            |req| self.create_port(ctx, req),
            |p: &Port| self.delete_port(ctx, &p.id),
        )
    }
}

/// Creates each of `reqs`; on the first failure deletes what was made (last first) and
/// returns that failure. An undo that fails is logged: the item it left is an ordinary
/// resource its owner can see and delete.
fn all_or_none<R, T>(
    reqs: Vec<R>,
    create: impl Fn(R) -> Result<T, NetworkError>,
    undo: impl Fn(&T) -> Result<(), NetworkError>,
) -> Result<Vec<T>, NetworkError> {
    if reqs.is_empty() {
        return Err(NetworkError::invalid("Resources required"));
    }
    let mut made = Vec::with_capacity(reqs.len());
    for req in reqs {
        match create(req) {
            Ok(item) => made.push(item),
            Err(e) => {
                for item in made.iter().rev() {
                    if let Err(undo_error) = undo(item) {
                        tracing::error!(
                            "bulk create failed ({e}) and undoing an item it made failed too: \
                             {undo_error}"
                        );
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}
