//! Nova's part of the control service: flavors, key pairs, server groups, and servers
//! (claims through `resources`, disks from `image-store`, one `outpost-vmm` per guest).

pub mod aggregates;
pub mod extra_specs;
pub mod flavors;
pub mod keypairs;
pub mod migrations;
pub mod server_groups;
pub mod servers;

/// Nova's upper bound for integer fields (its database columns are 32-bit signed).
pub const MAX_INT: i64 = i32::MAX as i64;

/// Nova's `osapi_max_limit`: no page holds more than this many items.
pub const MAX_PAGE: usize = 1000;
