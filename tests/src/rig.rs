//! A site of several boxes on one machine, for the cluster's tests and demo: each box is a
//! network namespace with a veth on a shared underlay bridge, its own cgroup (so a power loss
//! is `cgroup.kill` and a hang `cgroup.freeze`) and its own etcd member. Processes a test
//! starts on a box (outpostd, later) run in that namespace and cgroup through [`BoxNode::spawn`].
//!
//! The underlay is 10.<a>.<b>.0/24 with the host (the operator's side) at .254 and box `i` at
//! .`i`; names carry the rig's id so rigs of concurrent tests never meet. Everything is removed
//! by `Drop`: processes, namespaces, the bridge, cgroups and data directories.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sh;

/// etcd's client and peer ports on every box's underlay address.
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;

/// One box of the rig.
pub struct BoxNode {
    /// `box1`, `box2`, ... : the box's name in the cluster and in etcd.
    pub name: String,
    pub netns: String,
    /// The box's underlay address.
    pub addr: String,
    /// The box's own directory (etcd data, logs, state of what runs on it).
    pub dir: PathBuf,
    /// The veth's end on the underlay bridge.
    uplink: String,
    cgroup: PathBuf,
    /// What [`BoxNode::spawn`] started, by log name.
    children: Vec<(String, Child)>,
}

/// A rig of boxes on one underlay.
pub struct Rig {
    pub id: String,
    pub bridge: String,
    /// The underlay's /24, as `10.a.b`.
    pub prefix: String,
    pub host_addr: String,
    pub boxes: Vec<BoxNode>,
    /// Appended to every box's outpostd.toml (after `[cluster]`: sections of its own, such
    /// as `[guest]`).
    pub extra_config: String,
    cgroup: PathBuf,
    /// The boxes' dnsmasq files: outside the (private) temporary directory, since dnsmasq
    /// re-reads them after dropping root.
    run_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Builds `n` boxes (1..=9) on a new underlay; nothing runs on them yet.
    pub fn new(n: usize) -> Rig {
        assert!((1..=9).contains(&n), "a rig has 1 to 9 boxes");
        // Unique per process and per rig in it: the pid and a counter pick the /24.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{:x}{}", pid % 0xffff, seq);
        let net = (pid as usize * 7 + seq as usize) % (250 * 250);
        let prefix = format!("10.{}.{}", 100 + net / 250 % 150, net % 250);
        let dir = tempfile::Builder::new()
            .prefix("outpost-rig-")
            .tempdir()
            .expect("temporary directory for the rig");
        let cgroup = cgroup2_root().join(format!("outpost-rig-{id}"));
        let bridge = format!("oprig{id}");
        let host_addr = format!("{prefix}.254");
        let mut rig = Rig {
            id: id.clone(),
            bridge,
            prefix,
            host_addr,
            boxes: Vec::new(),
            extra_config: String::new(),
            cgroup,
            run_dir: PathBuf::from(format!("/run/outpost-rig-{id}")),
            _dir: dir,
        };
        std::fs::create_dir_all(&rig.cgroup).expect("a cgroup for the rig");
        sh(&format!(
            "ip link add {br} type bridge && ip addr add {host}/24 dev {br} && ip link set {br} up",
            br = rig.bridge,
            host = rig.host_addr
        ));
        for i in 1..=n {
            rig.add_box(i);
        }
        rig
    }

    fn add_box(&mut self, i: usize) {
        let name = format!("box{i}");
        let netns = format!("oprig{}-{name}", self.id);
        let addr = format!("{}.{i}", self.prefix);
        let dir = self._dir.path().join(&name);
        std::fs::create_dir_all(&dir).expect("box directory");
        let cgroup = self.cgroup.join(&name);
        std::fs::create_dir_all(&cgroup).expect("box cgroup");
        // veth: `ul<id>b<i>` on the bridge, `ul0` inside the box.
        let outer = format!("ul{}b{i}", self.id);
        sh(&format!(
            "ip netns add {netns} && ip -n {netns} link set lo up && \
             ip link add {outer} type veth peer name ul0 netns {netns} && \
             ip link set {outer} master {br} up && \
             ip -n {netns} addr add {addr}/24 dev ul0 && ip -n {netns} link set ul0 up && \
             ip -n {netns} route add default via {host}",
            br = self.bridge,
            host = self.host_addr
        ));
        self.boxes.push(BoxNode {
            name,
            netns,
            addr,
            dir,
            uplink: outer,
            cgroup,
            children: Vec::new(),
        });
    }

    /// The etcd `--initial-cluster` value for every box.
    fn initial_cluster(&self) -> String {
        self.boxes
            .iter()
            .map(|b| format!("{}=http://{}:{ETCD_PEER_PORT}", b.name, b.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts one etcd member per box, as one new cluster, and waits until every member
    /// answers a linearizable read.
    pub fn start_etcd(&mut self) {
        for i in 1..=self.boxes.len() {
            self.spawn_etcd(i, "new");
        }
        for i in 1..=self.boxes.len() {
            self.wait_etcd(i);
        }
    }

    /// Starts box `i`'s etcd member of the cluster of every box, `state` `new` or `existing`.
    fn spawn_etcd(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let token = format!("outpost-rig-{}", self.id);
        let b = &mut self.boxes[i - 1];
        let client = format!("http://{}:{ETCD_CLIENT_PORT}", b.addr);
        let peer = format!("http://{}:{ETCD_PEER_PORT}", b.addr);
        let args = [
            "etcd".to_string(),
            format!("--name={}", b.name),
            format!("--data-dir={}", b.dir.join("etcd").display()),
            format!("--listen-client-urls={client},http://127.0.0.1:{ETCD_CLIENT_PORT}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial}"),
            format!("--initial-cluster-token={token}"),
            format!("--initial-cluster-state={state}"),
            // docs/cluster.md: LAN timings, pre-vote on (off by default in 3.4).
            "--heartbeat-interval=100".into(),
            "--election-timeout=1000".into(),
            "--pre-vote=true".into(),
            "--auto-compaction-mode=periodic".into(),
            "--auto-compaction-retention=1h".into(),
            "--logger=zap".into(),
        ];
        b.spawn("etcd", &args);
    }

    /// Waits until box `i`'s etcd member is healthy.
    fn wait_etcd(&self, i: usize) {
        let b = &self.boxes[i - 1];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = b.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd on {} did not become healthy: {}\n{}",
                b.name,
                String::from_utf8_lossy(&out.stderr),
                b.log("etcd")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Adds a box to a running rig (the next number), with an etcd member of its own joined
    /// to the others' cluster the operator's way (`etcdctl member add`, then the new member
    /// started with `--initial-cluster-state=existing`); returns its number (1-based).
    pub fn grow(&mut self) -> usize {
        let i = self.boxes.len() + 1;
        assert!(i <= 9, "a rig has 1 to 9 boxes");
        self.add_box(i);
        let b = &self.boxes[i - 1];
        let peer = format!("http://{}:{ETCD_PEER_PORT}", b.addr);
        // etcd refuses a new member until its leader has been in touch with a quorum for a
        // few seconds ("unhealthy cluster"), as right after the rig formed.
        let add = ["member", "add", &b.name, &format!("--peer-urls={peer}")];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.boxes[0].etcdctl(&add);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcdctl member add: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        self.spawn_etcd(i, "existing");
        self.wait_etcd(i);
        i
    }

    /// Every box's etcd client URL, comma-separated (an `[cluster] etcd` value).
    pub fn etcd_endpoints(&self) -> String {
        self.boxes
            .iter()
            .map(BoxNode::etcd_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Unplugs box `i`'s underlay cable: the bridge's end of its veth goes down, so the box
    /// reaches no other box (nor they it) while everything on it keeps running and keeps its
    /// addresses and routes. [`Rig::plug`] puts it back.
    pub fn unplug(&self, i: usize) {
        sh(&format!("ip link set {} down", self.boxes[i - 1].uplink));
    }

    pub fn plug(&self, i: usize) {
        sh(&format!("ip link set {} up", self.boxes[i - 1].uplink));
    }

    /// Makes sure box `i`'s etcd member is not the leader (moving leadership to another
    /// member if it is). An isolated leader goes on renewing leases until it steps down, an
    /// election timeout later, so a test that times a cut from the renewals' side wants the
    /// box's member to be a follower.
    pub fn move_etcd_leader_off(&self, i: usize) {
        let b = &self.boxes[i - 1];
        let out = b.etcdctl(&["endpoint", "status", "--cluster", "-w", "json"]);
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("etcdctl endpoint status answers JSON");
        let members: Vec<(String, u64, u64)> = status
            .as_array()
            .expect("a status per member")
            .iter()
            .filter_map(|m| {
                let s = &m["Status"];
                Some((
                    m["Endpoint"].as_str()?.to_owned(),
                    s["header"]["member_id"].as_u64()?,
                    s["leader"].as_u64()?,
                ))
            })
            .collect();
        let Some((_, leader, _)) = members
            .iter()
            .find(|(e, id, leader)| *e == b.etcd_url() && id == leader)
        else {
            return;
        };
        let to = members
            .iter()
            .find(|(_, id, _)| id != leader)
            .expect("another member");
        let out = b.etcdctl(&["move-leader", &format!("{:x}", to.1)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// [`crate::eventually`], with every box's outpostd log in the panic's message.
    pub fn eventually<T>(&self, secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
        crate::eventually_or(secs, what, f, || {
            self.boxes
                .iter()
                .map(|b| format!("\n---- {}'s outpostd ----\n{}", b.name, b.log("outpostd")))
                .collect()
        })
    }

    /// Power back on box `i` after [`Rig::power_off`]: its link up, its etcd member started
    /// again on its data, then its outpostd; returns once its API answers.
    pub fn power_on(&mut self, i: usize) {
        let netns = self.boxes[i - 1].netns.clone();
        sh(&format!("ip -n {netns} link set ul0 up"));
        self.plug(i);
        self.spawn_etcd(i, "existing");
        self.wait_etcd(i);
        self.start_outpostd(i);
        self.boxes[i - 1].wait_api(Duration::from_secs(60));
    }

    /// Power loss of box `i` (1-based): every process in its cgroup killed at once and its
    /// underlay link down.
    pub fn power_off(&mut self, i: usize) {
        let b = &mut self.boxes[i - 1];
        b.kill_all();
        let _ = Command::new("ip")
            .args(["-n", &b.netns, "link", "set", "ul0", "down"])
            .status();
    }
}

/// Removes the cgroup `dir` and those below it (its servers' group), deepest first; their
/// processes must be gone.
fn remove_cgroup_tree(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `name` below this process's own cgroup in each cgroup v1 hierarchy.
fn v1_cgroups_named(name: &str) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(2) != Some(&"cgroup") {
            continue;
        }
        let options: Vec<&str> = f.get(3).map(|o| o.split(',').collect()).unwrap_or_default();
        // This process's line for the hierarchy names the same controllers.
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (!controllers.is_empty() && controllers.split(',').all(|c| options.contains(&c)))
                .then_some(path.trim_start_matches('/'))
        });
        if let Some(path) = path {
            dirs.push(PathBuf::from(f[1]).join(path).join(name));
        }
    }
    dirs
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
/// hybrid one (the kill and freeze files the rig uses exist only in v2).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .next()
        .expect("cgroup v2 is mounted (the rig's boxes are cgroups)")
}

/// The port each box's outpostd serves OpenStack clients on (its underlay address).
pub const API_PORT: u16 = 8774;

impl Rig {
    /// Writes box `i`'s outpostd configuration: a member of this rig's site (joining with
    /// `join_token` when given), managing the host networking of its namespace (bridges,
    /// taps, VXLAN, dnsmasq, nftables), TCP on its underlay address.
    pub fn write_outpostd_config(&self, i: usize, join_token: Option<&str>) {
        let b = &self.boxes[i - 1];
        let etcd: Vec<String> = self
            .boxes
            .iter()
            .map(|b| format!("\"{}\"", b.etcd_url()))
            .collect();
        let token = join_token
            .map(|t| format!("join_token = \"{t}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "state_dir = \"{state}\"\n\
             [api]\nlisten = \"{addr}:{API_PORT}\"\n\
             [network]\nrun_dir = \"{run}\"\n\
             [compute.jail]\ncgroup = \"{servers}\"\n\
             [cluster]\netcd = [{etcd}]\nname = \"{name}\"\nunderlay = \"{addr}\"\n{token}\
             {extra}",
            state = b.state_dir().display(),
            run = self.run_dir.join(&b.name).display(),
            servers = b.servers_cgroup(),
            addr = b.addr,
            etcd = etcd.join(", "),
            name = b.name,
            extra = self.extra_config,
        );
        std::fs::write(b.config_path(), text).expect("write outpostd.toml");
    }

    /// A site of `n` boxes, formed: etcd on every box, box 1 bootstraps the cluster, the
    /// others join with a token box 1 made for each; every API answers.
    pub fn site(n: usize) -> Rig {
        Rig::site_with(n, "")
    }

    /// Where box `i`'s outpostd keeps dnsmasq's files (`[network] run_dir`).
    pub fn net_run_dir(&self, i: usize) -> PathBuf {
        self.run_dir.join(&self.boxes[i - 1].name)
    }

    /// [`Rig::site`] with `extra` appended to every box's outpostd.toml.
    pub fn site_with(n: usize, extra: &str) -> Rig {
        let mut rig = Rig::new(n);
        rig.extra_config = extra.to_owned();
        rig.start_etcd();
        rig.write_outpostd_config(1, None);
        rig.start_outpostd(1);
        rig.boxes[0].wait_api(Duration::from_secs(60));
        for i in 2..=n {
            let name = rig.boxes[i - 1].name.clone();
            let out = rig.boxes[0].outpostd(&["cluster", "token-create", "--box", &name]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            rig.write_outpostd_config(i, Some(&token));
            rig.start_outpostd(i);
        }
        for b in &rig.boxes[1..] {
            b.wait_api(Duration::from_secs(60));
        }
        rig
    }

    /// Starts box `i`'s outpostd (see [`Rig::write_outpostd_config`]) in its namespace and
    /// cgroup; `wait` for its API.
    pub fn start_outpostd(&mut self, i: usize) {
        let bin = crate::outpostd_bin();
        let b = &mut self.boxes[i - 1];
        let config = b.config_path();
        b.spawn(
            "outpostd",
            &[
                bin.display().to_string(),
                "--config".into(),
                config.display().to_string(),
            ],
        );
    }
}

/// What [`BoxNode::http`] got back.
#[derive(Debug)]
pub struct HttpReply {
    pub code: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl BoxNode {
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("outpostd.toml")
    }

    /// The certificate this box's TCP listener presents (on the underlay it speaks TLS, with
    /// one made at its first start).
    pub fn tls_cert(&self) -> PathBuf {
        self.state_dir().join("tls/cert.pem")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("outpostd.sock")
    }

    /// `curl ARGS http://localhost<path>` over this box's unix socket (the admin's), for
    /// what [`BoxNode::api`] does not carry (uploads, downloads): (status, body bytes).
    pub fn curl(&self, args: &[&str], path: &str) -> (u16, Vec<u8>) {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
            .arg("--unix-socket")
            .arg(self.socket())
            .args(args)
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("curl runs");
        let split = out
            .stdout
            .iter()
            .rposition(|&c| c == b'\n')
            .expect("curl wrote the status");
        let code = String::from_utf8_lossy(&out.stdout[split + 1..])
            .trim()
            .parse()
            .unwrap_or(0);
        (code, out.stdout[..split].to_vec())
    }

    /// Uploads `file` through this box as Glance's `PUT /images/{id}/file` of image `id`
    /// (made beforehand, so a test can change the site in between).
    pub fn upload_image_data(&self, id: &str, file: &std::path::Path) {
        let (code, reply) = self.curl(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
            &format!("/image/v2/images/{id}/file"),
        );
        assert_eq!(code, 204, "{}", String::from_utf8_lossy(&reply));
    }

    /// Runs `outpostd --config <this box's> ARGS` (an operator's command on the box).
    pub fn outpostd(&self, args: &[&str]) -> std::process::Output {
        let bin = crate::outpostd_bin().display().to_string();
        let config = self.config_path().display().to_string();
        let mut argv = vec![bin.as_str(), "--config", config.as_str()];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// One request to this box's outpostd over its unix socket (which acts as the admin),
    /// at compute microversion `version`: (status, body).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        version: &str,
    ) -> (u16, serde_json::Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
            .arg("--unix-socket")
            .arg(self.socket())
            .args(["-H", &format!("OpenStack-API-Version: compute {version}")])
            .args(["-H", "Content-Type: application/json"]);
        if let Some(b) = body {
            cmd.args(["-d", &b.to_string()]);
        }
        let out = cmd
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// A flavor made through this box (`ram` MiB, one vCPU, a 1 GiB disk); its id.
    pub fn create_flavor(&self, name: &str, ram: u32) -> String {
        let (code, body) = self.api(
            "POST",
            "/compute/v2.1/flavors",
            Some(&serde_json::json!({"flavor": {"name": name, "ram": ram, "vcpus": 1, "disk": 1}})),
            "2.53",
        );
        assert_eq!(code, 200, "flavor {name} through {}: {body}", self.name);
        body["flavor"]["id"]
            .as_str()
            .expect("a flavor id")
            .to_owned()
    }

    /// One request to this box's outpostd over TCP on its underlay address, from the host (an
    /// OpenStack client's path, so no implied identity: send `X-Auth-Token` in `headers`).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> HttpReply {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-i", "--max-time", "10", "-X", method])
            .args(["-H", "Content-Type: application/json"]);
        for (name, value) in headers {
            cmd.args(["-H", &format!("{name}: {value}")]);
        }
        if let Some(b) = body {
            cmd.args(["-d", &b.to_string()]);
        }
        let out = cmd
            .arg("--cacert")
            .arg(self.tls_cert())
            .arg(format!("https://{}:{API_PORT}{path}", self.addr))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let code = lines
            .next()
            .and_then(|status| status.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        HttpReply {
            code,
            headers,
            body: serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        }
    }

    /// Waits until this box's outpostd answers on its socket.
    pub fn wait_api(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.api("GET", "/compute/v2.1", None, "2.1").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "outpostd on {} did not answer: {}",
                self.name,
                self.log("outpostd")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn etcd_url(&self) -> String {
        format!("http://{}:{ETCD_CLIENT_PORT}", self.addr)
    }

    /// Starts `argv` in this box's namespace and cgroup; its output goes to `<dir>/<log>.log`.
    pub fn spawn(&mut self, log: &str, argv: &[String]) {
        let out = std::fs::File::create(self.dir.join(format!("{log}.log"))).expect("log file");
        let err = out.try_clone().expect("log file handle");
        // The shell joins the cgroup before it becomes the program, so no child escapes it.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@""#)
            .arg(&self.cgroup)
            .arg(&self.netns)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn a process on a box");
        self.children.push((log.to_owned(), child));
    }

    /// The log a process started with [`BoxNode::spawn`] wrote.
    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{log}.log"))).unwrap_or_default()
    }

    /// Runs a command in the box's namespace (not its cgroup: it is the operator's hand).
    pub fn exec(&self, argv: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(argv)
            .output()
            .expect("ip netns exec runs")
    }

    /// `etcdctl` (v3 API) against this box's own member.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        let endpoint = format!("--endpoints={}", self.etcd_url());
        let mut argv = vec!["env", "ETCDCTL_API=3", "etcdctl", "--dial-timeout=2s"];
        argv.push(&endpoint);
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// `kill -9` of the process started as `log` (the rest of the box goes on).
    pub fn kill9(&mut self, log: &str) {
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.children.drain(..).partition(|(name, _)| name == log);
        self.children = kept;
        for (_, mut c) in gone {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the box's outpostd puts its servers' cgroups (`[compute.jail] cgroup`, relative
    /// to the cgroup v2 mount): below the box's own, so a power loss kills its guests too.
    pub fn servers_cgroup(&self) -> String {
        let relative = self
            .cgroup
            .strip_prefix(cgroup2_root())
            .unwrap_or(&self.cgroup);
        format!("{}/servers", relative.display())
    }

    /// The pids in the box's cgroup and the cgroups below it (where a box may put its guests).
    pub fn pids(&self) -> Vec<u32> {
        fn walk(dir: &std::path::Path, out: &mut Vec<u32>) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), out);
                }
            }
        }
        let mut pids = Vec::new();
        walk(&self.cgroup, &mut pids);
        pids
    }

    /// The pids of the box's processes whose command name is `comm` (`outpostd`,
    /// `outpost-vmm`, `etcd`).
    pub fn pids_named(&self, comm: &str) -> Vec<u32> {
        self.pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .collect()
    }

    /// The monitors running on the box (outpostd starts them in its cgroups).
    pub fn monitors(&self) -> Vec<u32> {
        self.pids_named("outpost-vmm")
    }

    /// The lease id box `name`'s alive key is on, as this box's etcd member reports it.
    pub fn alive_lease(&self, name: &str) -> Option<i64> {
        let out = self.etcdctl(&["get", "-w", "json", &format!("/outpost/v1/alive/{name}")]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["kvs"][0]["lease"].as_i64()
    }

    /// Kills every process of the box at once (cgroup v2 `cgroup.kill`) and reaps them.
    pub fn kill_all(&mut self) {
        let _ = std::fs::write(self.cgroup.join("cgroup.kill"), "1");
        for (_, mut c) in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for b in &mut self.boxes {
            b.kill_all();
            // The veth goes with its namespace, but asynchronously: delete it now.
            let _ = Command::new("ip").args(["link", "del", &b.uplink]).status();
            let _ = Command::new("ip").args(["netns", "del", &b.netns]).status();
            remove_cgroup_tree(&b.cgroup);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir(&self.cgroup);
        // On a hybrid host the boxes' servers also had cgroups in the v1 hierarchies, below
        // this process's own there (outpostd removes them with each server, not on a power
        // loss).
        for dir in v1_cgroups_named(&format!("outpost-rig-{}", self.id)) {
            remove_cgroup_tree(&dir);
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// A monitor's state as its own API reports it (`GET /`: `Running`, `Paused`), None when
/// it does not answer. Its socket is the one on its command line (`--api-sock`), so the
/// test does not depend on where outpostd keeps it.
pub fn monitor_state(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let at = args.iter().position(|a| *a == b"--api-sock")?;
    let socket = String::from_utf8_lossy(args.get(at + 1)?).into_owned();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "1", "--unix-socket", &socket])
        .arg("http://localhost/")
        .output()
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    info["state"].as_str().map(str::to_owned)
}

/// A stand-in for a box's watchdog device, since nothing can reset a namespace: a FIFO for
/// the box's `[cluster] watchdog`, read by a thread of the test that "resets" the box (kills
/// its cgroup, as [`Rig::power_off`] does) when nothing was written to it for `timeout`
/// while armed. It arms at the first write and stands down after the kernel's magic close
/// (a `V`, then the writer closing), as a watchdog device does.
pub struct WatchdogStandIn {
    pub path: PathBuf,
    fired: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl WatchdogStandIn {
    /// When it reset the box, if it did.
    pub fn fired(&self) -> Option<Instant> {
        *self
            .fired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for WatchdogStandIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl BoxNode {
    /// Starts a [`WatchdogStandIn`] for this box, at `<dir>/watchdog`.
    pub fn watchdog_stand_in(&self, timeout: Duration) -> WatchdogStandIn {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("watchdog");
        sh(&format!("mkfifo {}", path.display()));
        // Non-blocking: opening needs no writer, and a read without one is an end of file.
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .expect("open the watchdog FIFO");
        let fired = std::sync::Arc::new(std::sync::Mutex::new(None));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (fired_by, stopped) = (fired.clone(), stop.clone());
        let kill = self.cgroup.join("cgroup.kill");
        std::thread::spawn(move || {
            let (mut armed, mut fed, mut last) = (false, Instant::now(), 0u8);
            let mut buf = [0u8; 64];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match fifo.read(&mut buf) {
                    Ok(0) => armed &= last != b'V',
                    Ok(n) => (armed, fed, last) = (true, Instant::now(), buf[n - 1]),
                    Err(_) => {}
                }
                if armed && fed.elapsed() > timeout {
                    let _ = std::fs::write(&kill, "1");
                    *fired_by
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        WatchdogStandIn { path, fired, stop }
    }
}
