//! Outpost's control service and its client.
//!
//! `outpostd` speaks the OpenStack APIs (Keystone v3, Nova v2.1, Glance v2, Cinder v3,
//! Neutron v2.0) closely enough for the stock `openstack` client, on a unix socket whose peer
//! is trusted as admin and optionally on TCP. Layers, from the outside in: [`api`] (routing,
//! thin handlers, each service's error shape) → the domain modules, one per service and
//! resource kind ([`identity`], [`compute`], [`image`], [`volume`]), each reaching its state
//! only through its own store trait (its door, [`store`]) → [`storage`] (SQLite, implementing
//! the doors, one module per kind). `outpost` is the command-line client ([`cli`] over [`client`]).
//!
//! Images ([`image`], Glance) and volumes ([`volume`], Cinder) keep their bytes in
//! `outpost-image-store`; servers (Nova, placed by `resources`, run by `outpost-vmm`) live in
//! [`compute::servers`], booting from Glance images through [`image::boot_source`] and holding
//! them with [`image::hold`] so that an image in use cannot be deleted.

pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod compute;
pub mod config;
pub mod context;
pub mod daemon;
pub mod identity;
pub mod image;
pub mod metadata;
pub mod network;
pub mod quota;
pub mod random;
pub mod storage;
pub mod store;
pub mod timestamp;
pub mod tls;
pub mod volume;
