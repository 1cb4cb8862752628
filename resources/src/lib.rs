//! `outpost-resources`: what fits where. The resource model and scheduler of Outpost's
//! control service, shaped like OpenStack Placement and Nova's FilterScheduler.
//!
//! Pure logic: no files, no network, no clocks (time arrives as values), so everything is
//! tested with plain values. The control service owns persistence and concurrency; it
//! loads hosts and claims, asks this crate, and stores what changed.
//!
//! The model:
//! - a [`Host`] has one [`Inventory`] per [`ResourceClass`] (capacity =
//!   `(total - reserved) * allocation_ratio`), traits, aggregates, an availability zone
//!   and liveness;
//! - a [`Claim`] is what one consumer (server, or migration during a resize) holds on one
//!   host: all classes or none, at most one per consumer, released exactly once;
//! - a [`Cluster`] is the list of hosts (one box now, a few later) and their claims;
//! - a [`ResourceRequest`] (usually from a [`Flavor`]) says what a server needs;
//! - the [`Scheduler`] runs [`filters`] then [`weighers`] over the cluster and claims on
//!   the best host (among equals, the one its [`TieBreak`] prefers), or explains per host
//!   why there is [`NoValidHost`].
#![forbid(unsafe_code)]

mod claim;
mod class;
mod cluster;
mod config;
pub mod filters;
mod flavor;
mod host;
mod inventory;
mod request;
mod resize;
mod scheduler;
pub mod weighers;

pub use claim::{Claim, ClaimError, ConsumerId};
pub use class::{ClassError, ResourceClass, Resources};
pub use cluster::{Cluster, ClusterError};
pub use config::{
    HostConfig, DEFAULT_CPU_ALLOCATION_RATIO, DEFAULT_DISK_ALLOCATION_RATIO,
    DEFAULT_RAM_ALLOCATION_RATIO, DEFAULT_RESERVED_HOST_MEMORY_MB,
};
pub use flavor::{Flavor, FlavorError};
pub use host::{Host, HostId, HostState, DEFAULT_AVAILABILITY_ZONE, DEFAULT_SERVICE_DOWN_TIME};
pub use inventory::{ClassShortfall, Inventory, InventoryError, Shortfall};
pub use request::{
    GroupMember, GroupPolicy, ResourceRequest, SchedulingContext, ServerGroup, UnknownPolicy,
};
pub use resize::Resize;
pub use scheduler::{
    BatchPosition, ConfigError, HostRejection, NoValidHost, ReserveShortfall, ScheduleError,
    Scheduler, SchedulerConfig, Selection, TieBreak, TIE_EPSILON,
};
