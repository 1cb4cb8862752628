//! Keystone v3 handlers: tokens ([`auth`]) and the directory of projects, users and roles
//! ([`directory`]); [`views`] renders their JSON.

pub mod auth;
pub mod directory;
mod views;
