//! `outpost`: the appliance's command line, talking to outpostd over its unix socket (whose
//! peer acts as admin, so no credentials are needed). One module per resource kind:
//! [`flavor`], [`image`], [`server`], [`volume`], and for Neutron [`network`], [`subnet`],
//! [`port`] and [`security_group`] (sharing `neutron`'s lookups).
//! Output is a table by default or JSON with `-f json`; every API error becomes one line
//! carrying the service's own message.

pub mod console;
pub mod flavor;
pub mod image;
pub mod network;
mod neutron;
mod output;
pub mod port;
pub mod security_group;
pub mod server;
pub mod subnet;
pub mod volume;

use crate::client::{ApiResponse, Client, ClientError, Endpoint};
use clap::{Parser, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::Value;
use std::path::PathBuf;

pub const DEFAULT_SOCKET: &str = "/var/lib/outpost/outpostd.sock";

#[derive(Debug, Parser)]
#[command(
    name = "outpost",
    version,
    about = "Manage an Outpost appliance through outpostd"
)]
pub struct Cli {
    /// outpostd's unix socket.
    #[arg(long, env = "OUTPOST_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Server sizes (Nova flavors).
    #[command(subcommand)]
    Flavor(flavor::FlavorCommand),
    /// Servers (Nova): one guest each, run by its own outpost-vmm.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Disk, kernel and ramdisk images (Glance).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Volumes, their snapshots and types (Cinder).
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Networks (Neutron): one bridge each on this host.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// A network's address ranges, gateway, DNS servers and DHCP (Neutron).
    #[command(subcommand)]
    Subnet(subnet::SubnetCommand),
    /// Ports: a MAC and addresses on a network, for a server's NIC (Neutron).
    #[command(subcommand)]
    Port(port::PortCommand),
    /// Security groups and their rules (Neutron): `outpost security group ...`.
    #[command(subcommand)]
    Security(security_group::SecurityCommand),
    /// A server's interactive serial console.
    #[command(subcommand)]
    Console(console::ConsoleCommand),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The service refused: its message and the HTTP status.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("cannot attach to the console: {0}")]
    Console(String),
}

/// The one resource a lookup by name found: a 404 saying `none` when it found nothing, a
/// usage error saying `many` when the name is ambiguous.
fn only_match(
    mut matches: Vec<Value>,
    none: impl FnOnce() -> String,
    many: impl FnOnce() -> String,
) -> Result<Value, CliError> {
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(CliError::Api {
            status: 404,
            message: none(),
        }),
        _ => Err(CliError::Usage(many())),
    }
}

/// Runs one command; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String, CliError> {
    let api = Api {
        client: Client::new(Endpoint::Unix(cli.socket))?,
    };
    match cli.command {
        Command::Flavor(cmd) => flavor::run(&api, cmd, cli.format),
        Command::Server(cmd) => server::run(&api, cmd, cli.format),
        Command::Image(cmd) => image::run(&api, cmd, cli.format),
        Command::Volume(cmd) => volume::run(&api, cmd, cli.format),
        Command::Network(cmd) => network::run(&api, cmd, cli.format),
        Command::Subnet(cmd) => subnet::run(&api, cmd, cli.format),
        Command::Port(cmd) => port::run(&api, cmd, cli.format),
        Command::Security(cmd) => security_group::run(&api, cmd, cli.format),
        Command::Console(cmd) => console::run(&api, cmd),
    }
}

/// The API as the commands use it: JSON in, JSON out, errors as [`CliError::Api`].
pub struct Api {
    client: Client,
}

/// The compute microversion the CLI speaks: flavors with description, extra specs and an
/// integer swap.
const COMPUTE_VERSION: (&str, &str) = ("OpenStack-API-Version", "compute 2.75");

impl Api {
    pub fn new(client: Client) -> Api {
        Api { client }
    }

    /// The connection to outpostd, for what is not a JSON request (the console).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, CliError> {
        let resp = self
            .client
            .request(method, path, &[COMPUTE_VERSION], body)?;
        check(resp)
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.call(Method::GET, path, None)?.json()?)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        Ok(self.call(Method::POST, path, Some(body))?.json()?)
    }

    pub fn delete(&self, path: &str) -> Result<(), CliError> {
        self.call(Method::DELETE, path, None).map(drop)
    }

    /// A request whose reply has no body (202, 204).
    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(), CliError> {
        self.call(method, path, body).map(drop)
    }

    /// Streams `len` bytes of `data` to `path` with PUT.
    pub fn upload(
        &self,
        path: &str,
        data: Box<dyn std::io::Read + Send>,
        len: u64,
        progress: Box<dyn FnMut(u64) + Send>,
    ) -> Result<(), CliError> {
        let resp = self
            .client
            .upload(Method::PUT, path, &[], data, len, progress)?;
        check(resp).map(drop)
    }

    /// Writes the body of `GET path` to `out` as it arrives; returns the reply's headers.
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<ApiResponse, CliError> {
        check(self.client.download(path, &[], out)?)
    }
}

fn check(resp: ApiResponse) -> Result<ApiResponse, CliError> {
    if resp.status.is_success() {
        Ok(resp)
    } else {
        Err(CliError::Api {
            status: resp.status.as_u16(),
            message: resp.error_message(),
        })
    }
}
