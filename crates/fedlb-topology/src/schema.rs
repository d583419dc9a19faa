//! # Topology file reference
//!
//! One file describes the whole deployment; every node reads the same file and finds its
//! own part by name. TOML is the reference syntax; YAML and JSON with the same structure
//! are accepted (by file extension). Any value can be overridden from the environment with
//! the prefix `FEDLB` and `__` between levels: `FEDLB__DNS__TTL=30`,
//! `FEDLB__GLOBAL__STATUS=127.0.0.1:9000`, `FEDLB__DNS__SERVERS=127.0.0.1:53,[::1]:53`
//! (a comma-separated list; so are a region's `clients`, `geoip.countries`,
//! `geoip.continents` and `dns.servers`: `FEDLB__REGIONS__0__CLIENTS=10.0.0.0/8,2001:db8::/32`),
//! `FEDLB__FARMS__0__SERVERS__1__CAPACITY=2` (a number indexes an array, counting from 0 in
//! file order). A problem in an overridden value names the
//! variable. Variables with a single underscore (`FEDLB_LOG`) are not read, so unrelated variables
//! cannot break start-up. Values from the environment are typed as TOML would type them
//! (`30` is a number, `true` a boolean).
//!
//! Relative paths (key files, CA files, the embedded server's state directory) are relative
//! to the directory of the topology file.
//!
//! ## Common value types
//!
//! - **name**: 1–63 characters, lowercase letters, digits and `-`, not starting or ending
//!   with `-` (node names end up in certificates; service names in keys).
//! - **duration**: a humane string — `"500ms"`, `"2s"`, `"1m30s"`, `"1h"`, `"1d"` — or a
//!   number of seconds (`30`, `0.5`).
//! - **socket address**: `"127.0.0.1:7400"`, `"[::1]:7400"`. Host names are not resolved.
//! - **location**: `{ lat = 48.85, lon = 2.35 }` in degrees.
//! - **policy**: a name, or a table with `kind` and its parameters:
//!
//! | policy | syntax |
//! |---|---|
//! | least loaded (pending requests, else connections, per capacity) | `"least_loaded"` |
//! | fastest response | `"fastest_response"` |
//! | closest | `"closest"` or `{ kind = "closest", by = "auto" \| "rtt" \| "hops" \| "declared" }` |
//! | weighted by capacity | `"weighted"` |
//! | fixed order | `{ kind = "failover", order = ["eu-west", "us-east"] }` |
//! | round robin | `"round_robin"` |
//! | random | `"random"` |
//! | lowest application metric | `{ kind = "lowest_metric", metric = "dbms_users" }` |
//! | power of two choices | `"two_choices"` |
//! | composite | `{ kind = "composite", filters = [{ max_load = 0.8 }, { max_response_time = "200ms" }, { max_metric = { dbms_users = 100 } }], rank = "closest", fallback = "least_loaded" }` |
//!
//!   A composite ranks by `rank` among the candidates that pass every filter, then the rest,
//!   ranked by `fallback` if given (a policy name or table, not a composite), else by `rank`.
//!   `max_load` is a fraction of capacity in `0..=1`. `closest` measures distance by
//!   `auto` (declared distance, else measured RTT, else hops) unless `by` says otherwise.
//!
//!   `two_choices` (Mitzenmacher's power of two choices): two candidates drawn at random
//!   weighted by capacity, the less loaded of them first; drawn anew every `rotate_every`
//!   and whenever the healthy set changes. With readings that are seconds old, "least
//!   loaded" sends every resolver that refreshes to the same candidate until the next
//!   reading; the better of two random choices keeps most of the gain without that herd.
//!   Usable at either tier, and as a composite's `rank` or `fallback`.
//!
//! ## Top level
//!
//! ```toml
//! name = "three-continents"   # optional; defaults to the file name without extension
//! heartbeat = { interval = "1s", missed = 3 }   # optional; see "Defaults"
//! summary_heartbeat = { interval = "400ms" }    # optional; farm summaries, see "Defaults"
//! [global]     # the global node                          (required)
//! [dns]        # where answers are published              (required)
//! [[services]] # replicated services                      (at least one)
//! [[farms]]    # sites, each with a farm node             (any number)
//! [[servers]]  # servers attached directly to the global node (any number)
//! [[regions]]  # regions of clients, each answered from where it is (any number)
//! ```
//!
//! `heartbeat`: a report (monitor → farm or global node) and a summary (farm → global node)
//! go out at least every `interval` even when nothing changed; a reporter silent for
//! `missed` intervals is **stale** (not chosen), for `2 × missed` intervals **down**.
//! `summary_heartbeat` (top level, or per farm) sets the same for farm summaries alone.
//!
//! ## `[global]`
//!
//! | field | type | |
//! |---|---|---|
//! | `name` | name | default `"global"`; its certificate identity |
//! | `listen` | socket address | QUIC address farm nodes and agents connect to (required) |
//! | `status` | socket address | status HTTP endpoint (required) |
//! | `location` | location | optional; farms with a location get a great-circle distance from it |
//! | `embedded` | table | optional; this global node's own built-in DNS server (same fields as `dns.embedded`) |
//!
//! **Several global nodes** (no single point of failure): write `[[global]]` once per node
//! instead of one `[global]`; each needs its own `name`, `listen` and `status`. Farm nodes and
//! directly attached agents report to every one of them (one connection each); each decides
//! on its own from the same inputs and publishes. Every global node decides the default
//! region as seen from the **first** one's `location`, so that identical inputs give
//! identical answers on every node. Where each publishes:
//!
//! - its own `embedded` server (each on its own address and `state_dir`; `dns` then needs
//!   no server of its own — `spread` must be the same on every node);
//! - else the shared `dns.servers` primaries (RFC 2136 with compare-and-swap, so the DNS
//!   server orders the writers; a writer defers to a peer that hears more candidates — see
//!   `fedlb_core::peers`). A shared `dns.embedded` cannot serve several global nodes (it
//!   lives in one node's process): give each node its own `embedded`.
//!
//! ```toml
//! [[global]]
//! name = "g1"
//! listen = "127.0.0.1:7400"
//! status = "127.0.0.1:7480"
//! embedded = { listen = "127.0.0.1:15353", state_dir = "state/g1" }
//! [[global]]
//! name = "g2"
//! listen = "127.0.0.2:7400"
//! status = "127.0.0.2:7480"
//! embedded = { listen = "127.0.0.2:15353", state_dir = "state/g2" }
//! ```
//!
//! ## `[dns]`
//!
//! Either an external primary (BIND, Knot, PowerDNS) updated by RFC 2136:
//!
//! ```toml
//! [dns]
//! servers = ["127.0.0.1:53"]      # or server = "127.0.0.1:53"; several primaries allowed
//! zone = "example.test."
//! ttl = "30s"                     # TTL of published records (default 30s)
//! derive_ttl = false              # true: TTL = time until the answer could next change
//!                                 # (a challenger's dwell), between ttl_min and ttl, as gdnsd does
//! ttl_by_load = false             # true: TTL = ttl × the answer's relative headroom (short for
//!                                 # an answer that sends clients to a small or busy member),
//!                                 # between ttl_min and ttl; with derive_ttl the shorter wins
//! ttl_min = "5s"                  # lower bound of a derived or by-load TTL (default 5s)
//! reconcile = "60s"               # re-read the server this often and repair drift (default 60s)
//! file = { json = "answers.json", zone_fragment = "answers.zone" }   # also write the answers
//!                                 # to files (atomically, on change), for non-DNS routing
//! command = { argv = ["/usr/local/bin/apply-answers"], timeout = "10s" }   # also run a
//!                                 # command with the answers as JSON on stdin, on change
//! answers = 1                     # addresses per name (default 1; a service may override)
//! tsig = { key_file = "keys/fedlb-key.conf" }
//! geoip_database = "GeoLite2-Country.mmdb"   # only for regions with `geoip`
//! ```
//!
//! or the built-in server:
//!
//! ```toml
//! [dns]
//! zone = "example.test."
//! embedded = { listen = "127.0.0.1:5353", state_dir = "/var/lib/fedlb/dns", spread = "all" }
//! ```
//!
//! The built-in server as a hidden primary, with secondaries (BIND, Knot, … that answer the
//! clients and keep answering while the global node is down):
//!
//! ```toml
//! [dns]
//! zone = "example.test."
//! embedded = { listen = "192.0.2.1:5353", state_dir = "/var/lib/fedlb/dns",
//!              secondaries = ["192.0.2.53:53", "192.0.2.54:53"],
//!              transfer_key = { key_file = "keys/transfer.conf" } }
//! ```
//!
//! `secondaries`: addresses (`ip:port`; the port is where NOTIFY goes) that may transfer the
//! zone; each gets a NOTIFY after every change. Transfers from any other address, unsigned
//! or over UDP are refused. `transfer_key` (required with `secondaries`, same form as `tsig`):
//! the key secondaries sign transfers with; it cannot update the zone. A region's view is
//! transferred with the region's own key. `fedlb dns-config bind|knot` prints the
//! secondaries' configuration.
//!
//! `spread` (embedded server only): how a query for a name whose answer has several
//! addresses is answered. `"hashed"` (default): one address chosen by weight from a hash of
//! the client's /24 (IPv4) or /56 (IPv6) — the EDNS Client Subnet when the query carries
//! one, else the source address — so a client keeps its server (PowerDNS `pickwhashed`);
//! `"weighted"`: one address per query, drawn by the published weights (PowerDNS
//! `pickwrandom`, gdnsd `weighted`); `"all"`: the whole set, as any other DNS server does.
//! The weights are the global node's decision (by headroom with `answers = "weighted"` or
//! `spill = "split"`, equal otherwise); they reach the server in-process, not through DNS.
//! Reads signed with fedlb's TSIG keys (the publisher's own reconcile reads) always get the
//! whole set. External servers (BIND, Knot, PowerDNS) are always given the whole set.
//!
//! `tsig` (required with `servers`, optional with `embedded`): `key_file` is the file
//! `tsig-keygen NAME > file` writes (`key "NAME" { algorithm hmac-sha256; secret "…"; };`)
//! or a file holding only the base64 secret. With a keygen file, `name` selects one of
//! several keys and `algorithm` must agree with the file if given. With a bare secret,
//! `name` is required and `algorithm` defaults to `hmac-sha256`. Instead of `key_file`,
//! `secret = "base64…"` gives the secret inline (handy from the environment:
//! `FEDLB__DNS__TSIG__SECRET`). Algorithms: `hmac-sha256`, `hmac-sha384`, `hmac-sha512`.
//!
//! **Several zones**: instead of `zone`, `zones` lists them (not both):
//!
//! ```toml
//! [dns]
//! servers = ["127.0.0.1:53"]
//! tsig = { key_file = "keys/fedlb-key.conf" }
//! zones = [
//!   { name = "example.com." },                                   # dns.servers, dns.tsig
//!   { name = "example.net.", servers = ["192.0.2.54:53"], tsig = { key_file = "keys/net.conf" } },
//! ]
//! ```
//!
//! A service's FQDN picks its zone: the longest zone it ends with. Each zone gets one UPDATE
//! per change tick, to its own `servers` signed with its own `tsig` when given, else to
//! `dns.servers` with `dns.tsig`. Regions keep working: each view (embedded or BIND) holds
//! every zone, written with the region's key; a region with primaries of its own gets every
//! zone there. The embedded server serves every zone itself (per-zone `servers` and `tsig`
//! are refused with it). Refused: an FQDN in no zone, a zone listed twice, a zone inside
//! another (a name under both would depend on delegation: publish the inner zone's names in
//! the outer one, or serve it elsewhere), both `zone` and `zones`, and — for now — several
//! zones with `dns.file`, `dns.command` or `dns.embedded.secondaries`.
//!
//! `geoip_database`: a MaxMind-format country database (GeoIP2/GeoLite2 Country, DB-IP),
//! needed when a region places clients by `geoip`. Checked to be a file where key files
//! are read (the global node, `fedlb check`).
//!
//! ## `[[services]]`
//!
//! | field | type | |
//! |---|---|---|
//! | `name` | name | required, unique |
//! | `fqdn` | domain name | the name answered, inside `dns.zone` or one of `dns.zones` (required) |
//! | `port` | 1–65535 | the service port, probed unless a probe says otherwise (required) |
//! | `ttl` | duration | TTL of this name's records (default: `dns.ttl`) |
//! | `global` | tier | how the global node chooses among farms and direct servers |
//! | `local` | tier | how each farm node chooses among its servers (farms may override) |
//! | `probes` | array of probes | how every instance of the service is measured |
//! | `metrics` | table metric → `"min"` \| `"max"` \| `"sum"` \| `"mean"` | the application metrics farm summaries carry upward, each aggregated over the farm's servers that are up (`metrics = { dbms_users = "sum" }`); a metric not listed stays inside the farm |
//!
//! **Across farms.** A farm is one candidate of the global tier; its summary carries the
//! farm's readings: pending requests and connections summed, the best response time, each
//! metric of `metrics` by its rule, and its **hop count: the fewest hops of the servers of
//! its answer, as the farm's `hops` probes measure them** — from the farm node (remote
//! servers) or the server's agent (intrusive), not from the global node. The patent's
//! "closest = fewest hops from the name server" would measure from the global node; fedlb
//! does not probe the farms' servers from the global node (the farm node owns them, and a
//! traceroute-style probe per farm answer from one node would follow every local change),
//! so `closest` with `by = "hops"` ranks farms by how far their answer is from their own
//! node; to rank by distance from the global node use `by = "rtt"` (QUIC round-trip time to
//! each farm node) or declared distances.
//!
//! A `max_metric` filter table may say what a candidate that does not report the metric
//! does: `{ max_metric = { dbms_users = 100 }, missing = "fail" }` (not known to be under
//! the limit: fails) or `missing = "pass"`. Without `missing`, `fedlb check` refuses a filter
//! some candidate could not report: a metric no probe measures, or, at the global tier of a
//! service farms offer, one the service's `metrics` does not aggregate (every farm would
//! pass unmeasured).
//!
//! A **tier** table: `policy` (default global `"closest"`, or with `[[regions]]` the
//! composite `{ filters = [{ max_load = 0.8 }], rank = "closest", fallback = "least_loaded" }`;
//! local `"least_loaded"`),
//! `answers` (≥ 1, the first N of the ranking with equal weights; or `"weighted"`: every
//! healthy member, weighted by its headroom = capacity × (1 − load), at least 5 % of its
//! capacity; global default `dns.answers`; local default `"weighted"` when the tier names
//! no `policy`, else 1), `spill` (`"split"` default with `[[regions]]` and a policy with a
//! `max_load` filter, else `"move"`; `"split"`: when the best candidate by the composite's
//! `rank` is over the limit, answer it plus the next candidates in the composite's order
//! until their room under the limit covers its excess; the best keeps limit ÷ load of the
//! answer and the others share the rest by their room — a region is split across farms
//! instead of moved at once, with no dwell), `fail_static`
//! (`"keep_last"` default, or `"all"`), `hysteresis = { margin = 0.2, dwell = "10s" }`
//! (margin in `0..1`), `rotate_every` (how often round robin, random and weighted draw a
//! new order; default `"30s"`).
//!
//! A **probe** (`[[services.probes]]`): `kind`, optional `name` (default: the kind; unique
//! within the service), `interval`, `timeout`, `rise`, `fall` (≥ 1), `affects_health`
//! (whether failing makes the instance down), `port` (default: the service port), and by kind:
//!
//! | kind | fields | default interval / timeout | affects health |
//! |---|---|---|---|
//! | `tcp` | — (connect) | 1s / 800ms | yes |
//! | `http`, `https` | `path` (default `/`), `host` (Host header), `expect_status` (default 200), `body_contains`, `ca_file` (https only) | 1s / 800ms | yes |
//! | `icmp` | — | 1s / 800ms | yes |
//! | `hops` | `max_hops` (default 30) | 1h / 10s | no |
//! | `load` | `source = "nginx_stub_status"` + `url`; `source = "prometheus"` + `url` + `metric` (+ optional `labels = { handler = "api" }`: only series carrying them count, summed; `record_as = "pending"` (default) \| `"connections"` \| `"metric"`: the value under the metric's own name, for `lowest_metric`, `max_metric` and farm `metrics`); `source = "proc_net_tcp"` (+ optional `port`) | 1s / 800ms | no |
//! | `command` | `argv` (non-empty, run without a shell), `metric` (the number it prints) | 1s / 2s | no |
//!
//! A default timeout never exceeds the probe's interval. Probes run against the server's `probe_address` if it has one, else its first address.
//!
//! **Re-probing.** A probe runs once per `interval`, whatever its result, with one
//! exception: a failure that hints at a crash (connection refused or reset) on a probe that
//! is not down yet is re-run at once, once per failure episode (until the next success). If
//! that re-run is refused too, the crash is confirmed and the probe is down without waiting
//! for the rest of `fall`. An intrusive agent's listen watcher (the service's listening
//! socket vanished) earns the same one re-run. So a dead server costs one probe per
//! interval, like a live one: a server refusing for 10 s at a 1 s interval is probed 11 or
//! 12 times. There is no separate, slower interval for down servers: at one tiny request per
//! interval a dead server already costs no more than a live one, and a slower interval would
//! only delay its recovery.
//!
//! ## `[[farms]]`
//!
//! | field | type | |
//! |---|---|---|
//! | `name` | name | required; unique among farms, servers and nodes |
//! | `listen` | socket address | the farm node's QUIC address (agents connect to it); the farm node is named as the farm |
//! | `status` | socket address | the farm node's status endpoint |
//! | `nodes` | array of `{ name, listen, status }` | instead of `listen`/`status`: two or more farm nodes (see below) |
//! | `distance_ms` | number ≥ 0 | pinned distance from the global node |
//! | `location` | location | used when `distance_ms` is absent (great-circle km to `global.location`) |
//! | `heartbeat` | `{ interval, missed }` | overrides the top-level heartbeat for this farm's reports and summaries |
//! | `local.<service>` | tier | per-service override of the service's `local` tier, field by field |
//! | `servers` | array of servers | at least one |
//! | `summary_heartbeat` | `{ interval, missed }` | how often its farm nodes summarise to the global node when nothing changes, and when their silence counts (default: the farm's heartbeat interval, at most 400 ms, and its `missed`) |
//!
//! **Several farm nodes.** `nodes = [{ name = "eu-a", listen = "…", status = "…" }, { name =
//! "eu-b", … }]` declares a farm summarised by every one of them: each has its own
//! certificate (`fedlb certs` issues one per node) and runs as `fedlb farm --node eu-a`;
//! agents report to all of them (one connection each); remotely probed servers are probed by
//! each (independent views: N farm nodes cost N× the probes); each sends the farm's summary
//! to the global node, which takes the farm as up while any of its farm nodes reports it up
//! and uses the summary of the first node in this order that is live and reports the farm up
//! (status names it). Node names are certificate identities: unique among all nodes.
//!
//! ## Servers (`[[farms.servers]]`, and `[[servers]]` for direct attachment)
//!
//! | field | type | |
//! |---|---|---|
//! | `name` | name | required, unique across the whole topology |
//! | `address` / `addresses` | IP / array of IPs | answered when chosen (IPv4 → A, IPv6 → AAAA) |
//! | `services` | array of service names | the services it offers (required, non-empty) |
//! | `mode` | `"remote"` (default) or `"intrusive"` | remote: probed by its farm node (or the global node); intrusive: an agent on the server runs the probes |
//! | `agent` | name | intrusive only: the agent's node name (default: the server's name); servers of one farm may share an agent |
//! | `capacity` (alias `weight`) | number > 0 | requests (or connections) in flight at full load: load = pending ÷ capacity, so `max_load = 0.8` means 80 % of it; also the weight of `weighted` (default 100) |
//! | `probe_address` | IP | probe this address instead of the answered one |
//! | `distance_ms`, `location` | | direct servers only: distance from the global node |
//!
//! ## `[[regions]]`
//!
//! The global node decides each service once for its own view (the **default region**:
//! every client no region claims) and once per region, from where that region's clients
//! are, so each client is sent to the closest healthy farm from where *it* is.
//!
//! ```toml
//! [[regions]]
//! name = "eu"
//! clients = ["127.0.10.0/24", "2001:db8:10::/48", "192.0.2.7"]
//! geoip = { countries = ["DE", "FR"], continents = ["EU"] }   # needs dns.geoip_database
//! location = { lat = 50.11, lon = 8.68 }
//! distance_ms = { europe = 12, america = 95 }
//! tsig = { key_file = "keys/eu.conf" }       # the key of its view
//! # dns = { servers = ["127.0.0.1:5310"] }   # or a primary of its own
//! ```
//!
//! | field | type | |
//! |---|---|---|
//! | `name` | name | required, unique; `default` is reserved for the implicit default region |
//! | `clients` | array of prefixes | `"10.0.0.0/8"`, `"2001:db8::/32"`; a bare address is a /32 or /128. Host bits must be zero. A prefix belongs to one region; a client matches the most specific prefix of all regions |
//! | `geoip` | `{ countries, continents }` | countries as ISO 3166-1 alpha-2 codes (`"DE"`; any case), continents as `AF`, `AN`, `AS`, `EU`, `NA`, `OC`, `SA`; a country or continent belongs to one region. Needs `dns.geoip_database` |
//! | `location` | location | where its clients are: great-circle km to farms (and direct servers) with a location |
//! | `distance_ms` | table name → number ≥ 0 | pinned distance to farms and direct servers, by name; beats the one computed from locations |
//! | `dns` | `{ servers = [socket address, …] }` | its own primaries, for DNS servers without views (Knot, PowerDNS) |
//! | `tsig` | as `dns.tsig` | the key its updates are signed with |
//!
//! A region needs `clients` or `geoip` (or both). A farm's distance from a region is its
//! `distance_ms` entry if listed, else the great-circle distance between the two locations;
//! a candidate with neither is ranked after those with a distance (round-trip times and hop
//! counts measured from the global node say nothing of a region's clients).
//!
//! Where a region's answers go, and with which key:
//!
//! - External server (`dns.servers`), region without `dns`: the region is a **view** of
//!   the zone's servers (BIND `view` with `match-clients { key <its key>; !key <others>; … }`),
//!   selected by the key signing the update. Its `tsig` is required, and differs from
//!   `dns.tsig` (the default view's) and from every other view's.
//! - External server, region with `dns.servers`: its own primaries get its updates, signed
//!   with its `tsig`, or with `dns.tsig` when it gives none. Its servers are not the zone's
//!   nor another region's.
//! - Embedded server: it answers each region itself (by client address, or EDNS Client
//!   Subnet); `dns` is refused, `tsig` is optional (a random key is made at run time, as for
//!   the default view).
//!
//! ## Defaults and why
//!
//! | setting | default | why |
//! |---|---|---|
//! | probe `interval` | 1s | detection time is `interval × fall`; 2 s failover detection at the cost of one tiny request per second per probe |
//! | probe `timeout` | 800ms | below the interval, so a run never overlaps the next, and far above loopback/LAN latency |
//! | `rise` / `fall` | 2 / 2 | one lost packet does not flap a server; two in a row do |
//! | `hops` interval | 1h | routes change rarely and traceroute-style probes are costly |
//! | heartbeat | 1s, `missed = 3` | a silent reporter is stale after 3 s and down after 6 s: one lost heartbeat is tolerated, a dead node is noticed within a few seconds |
//! | summary_heartbeat | the heartbeat's interval, at most 400ms; its `missed` | a dead farm node is noticed by its silence alone: after 1.2 s (about 1 s on average) instead of 3 s, so a one-node farm leaves the answer within 1.5 s of its node's death; a few small summaries a second per farm cost the global node little (`fedlb_core::SUMMARY_INTERVAL_CAP`) |
//! | hysteresis | global: margin 20 %, dwell 10s; local: none | global: a challenger must be clearly better for a while before a healthy choice changes, so a recovered farm does not take traffic back at once and near-equal farms do not flap; local: off, because a least-loaded choice held for a dwell herds every resolver that refreshes onto one server (`fedlb simulate` on `scenarios/three-regions`: 600 ms mean response with local hysteresis, 87 ms without) |
//! | `answers` | local: `"weighted"` unless the tier names a policy (then 1); global: `dns.answers` (1) | one preferred server takes whole resolvers' load and drowns; the scenario suite (README) gives the weighted set 0.48–0.50× the best single-level baseline's mean over nine workloads and three seeds, one server per farm 1.22–1.32× |
//! | `spill` | `split` with regions (a `max_load` composite), else `move` | a move sends a whole region away from a farm just over its limit and back: `-move` 0.98–1.10× in the suite against 0.48–0.50× |
//! | `embedded.spread` | `hashed` | one member per client subnet by weight: the suite's best (`-drawn`, a draw per query, 0.50–0.55×; `-whole-set`, what other DNS servers do, drowns a small server on very unequal farms) |
//! | `ttl_by_load` | false | shortened TTLs bring resolvers back to the same busy farm more often: 0.74–0.82× in the suite against 0.48–0.50× |
//! | `fail_static` | `keep_last` | never publish an empty answer; the last good answer is the best guess |
//! | `ttl` | 30s | resolvers honour it; failover then costs detection (≈ 2 s) plus at most 30 s of caching |
//! | `rotate_every` | 30s | one TTL: a new rotation per cache lifetime |
//!
//! ## Checks
//!
//! Errors (the file is refused; every one is reported, an unknown field does not stop the
//! rest): unknown fields, wrong types, duplicate names, unknown services / policies / probe
//! kinds, bad addresses and durations, out-of-range numbers, `nan`/`inf` in any number,
//! integers beyond 64 bits, a farm with no servers, a service no server offers, an FQDN
//! outside the zone, a missing or malformed TSIG key, failover orders naming non-members,
//! two nodes on one address, two servers answering one address for one port, a server
//! named like a farm, a load-probe URL whose host is a name (not an IP or `server`), a
//! `proc_net_tcp` or `command` probe on a remotely probed server (it would measure the
//! farm or global node), an environment variable indexing past the end of an array;
//! regions: a region named `default` or declared twice, a bad prefix or one with host bits
//! set, a prefix, country or continent in two regions, a region with no clients, `geoip`
//! without `dns.geoip_database` (or a database that is not a file), an unknown country or
//! continent code, a `distance_ms` naming no farm or direct server or not a number ≥ 0, a
//! view without its own key or with another view's key, a region's `dns` with the embedded
//! server, a region primary that is already the zone's or another region's; a composite
//! `fallback` that is itself a composite; `answers` neither a number in 1..=64 nor
//! `"weighted"`; an unknown `spill`, or `spill = "split"` without a composite policy with a
//! `max_load` filter; an unknown `embedded.spread`; zones: both `zone` and `zones`, a zone
//! listed twice or inside another, an FQDN in no zone, per-zone `servers` or `tsig` with the
//! embedded server, several zones with `file`, `command` or secondaries; metrics: an
//! unknown aggregation rule, a `max_metric` filter without `missing` on a metric some
//! candidate cannot report, an unknown `missing` or one on a filter without `max_metric`,
//! an unknown `record_as`, a label name Prometheus would refuse.
//!
//! Limits: a topology file is at most 4 MiB and nested at most 64 levels; in YAML,
//! anchors and aliases may copy at most 100,000 values or 4 MiB in all (an alias bomb is
//! refused before it is expanded). Values of `tsig` (and any field named like a secret)
//! are never shown in an error.
//!
//! Warnings (`fedlb check` prints them): a TTL far above the probe interval, rise or fall
//! of 1 with sub-second intervals, a timeout not below its interval, a hop probe more often
//! than every minute, a hop probe on a remotely probed server (it counts hops from the
//! farm or global node), a service with no probe that affects health, `closest` without
//! declared distances, `lowest_metric` on a metric no probe measures, a short TSIG secret,
//! a client prefix inside another region's (its clients belong to the most specific) or
//! inside its own region's (redundant), a region close to no farm (no `distance_ms`, and no
//! location or none on farms), a `dns.geoip_database` no region uses, `spill = "split"` with
//! `answers = "weighted"` (no effect).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// A whole topology file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopology {
    pub name: Option<String>,
    pub heartbeat: Option<RawHeartbeat>,
    pub summary_heartbeat: Option<RawHeartbeat>,
    pub global: RawGlobals,
    pub dns: RawDns,
    pub services: Vec<RawService>,
    #[serde(default)]
    pub farms: Vec<RawFarm>,
    #[serde(default)]
    pub servers: Vec<RawServer>,
    #[serde(default)]
    pub regions: Vec<RawRegion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    pub interval: Option<RawDuration>,
    pub missed: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobal {
    pub name: Option<String>,
    pub listen: String,
    pub status: String,
    pub location: Option<RawLocation>,
    pub embedded: Option<RawEmbedded>,
}

/// `global`: one table (`[global]`, one global node) or an array of tables (`[[global]]`,
/// several).
#[derive(Debug)]
pub(crate) enum RawGlobals {
    One(Box<RawGlobal>),
    Many(Vec<RawGlobal>),
}

impl<'de> Deserialize<'de> for RawGlobals {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawGlobals;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a global node table ([global]) or an array of them ([[global]])")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawGlobals, A::Error> {
                RawGlobal::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|g| RawGlobals::One(Box::new(g)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<RawGlobals, A::Error> {
                Vec::<RawGlobal>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawGlobals::Many)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocation {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub server: Option<String>,
    pub servers: Option<Vec<String>>,
    pub embedded: Option<RawEmbedded>,
    pub zone: Option<String>,
    pub zones: Option<Vec<RawZone>>,
    pub ttl: Option<RawDuration>,
    pub ttl_min: Option<RawDuration>,
    pub derive_ttl: Option<bool>,
    pub ttl_by_load: Option<bool>,
    pub reconcile: Option<RawDuration>,
    pub file: Option<RawFileOutput>,
    pub command: Option<RawCommandOutput>,
    pub answers: Option<i64>,
    pub tsig: Option<RawTsig>,
    pub geoip_database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFileOutput {
    pub json: String,
    pub zone_fragment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommandOutput {
    pub argv: Vec<String>,
    pub timeout: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmbedded {
    pub listen: String,
    pub state_dir: String,
    #[serde(default)]
    pub secondaries: Vec<String>,
    pub transfer_key: Option<RawTsig>,
    pub spread: Option<String>,
}

/// One zone of `dns.zones`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZone {
    pub name: String,
    pub servers: Option<Vec<String>>,
    pub tsig: Option<RawTsig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTsig {
    pub key_file: Option<String>,
    pub secret: Option<String>,
    pub name: Option<String>,
    pub algorithm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: String,
    pub fqdn: String,
    pub port: i64,
    pub ttl: Option<RawDuration>,
    pub global: Option<RawTier>,
    pub local: Option<RawTier>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
    /// Metric name → how farms aggregate it in their summaries.
    pub metrics: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTier {
    pub policy: Option<RawPolicy>,
    pub answers: Option<RawAnswers>,
    pub spill: Option<String>,
    pub fail_static: Option<String>,
    pub hysteresis: Option<RawHysteresis>,
    pub rotate_every: Option<RawDuration>,
}

/// A tier's `answers`: a number of addresses, or a name (`"weighted"`).
#[derive(Debug, Clone)]
pub(crate) enum RawAnswers {
    Count(i64),
    Named(String),
}

impl<'de> Deserialize<'de> for RawAnswers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawAnswers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of addresses or \"weighted\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAnswers, E> {
                Ok(RawAnswers::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAnswers, E> {
                Ok(RawAnswers::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawAnswers, E> {
                Ok(RawAnswers::Named(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHysteresis {
    pub margin: Option<f64>,
    pub dwell: Option<RawDuration>,
}

/// A policy: a bare name or a table with `kind`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicyTable {
    pub kind: String,
    pub by: Option<String>,
    pub order: Option<Vec<String>>,
    pub metric: Option<String>,
    pub filters: Option<Vec<RawFilter>>,
    pub rank: Option<Box<RawPolicy>>,
    pub fallback: Option<Box<RawPolicy>>,
    /// Written as a bare name (`policy = "closest"`), not as a table.
    #[serde(skip)]
    pub short: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawPolicy(pub RawPolicyTable);

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a policy name or a table with `kind`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPolicy, E> {
                Ok(RawPolicy(RawPolicyTable {
                    kind: s.to_owned(),
                    short: true,
                    ..RawPolicyTable::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPolicy, A::Error> {
                RawPolicyTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawPolicy)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    pub max_load: Option<f64>,
    pub max_response_time: Option<RawDuration>,
    pub max_metric: Option<BTreeMap<String, f64>>,
    pub missing: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProbe {
    pub name: Option<String>,
    pub kind: String,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
    pub affects_health: Option<bool>,
    pub port: Option<i64>,
    // http / https
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<i64>,
    pub body_contains: Option<String>,
    pub ca_file: Option<String>,
    // hops
    pub max_hops: Option<i64>,
    // load
    pub source: Option<String>,
    pub url: Option<String>,
    // load (prometheus) and command
    pub metric: Option<String>,
    // load (prometheus)
    pub labels: Option<BTreeMap<String, String>>,
    pub record_as: Option<String>,
    // command
    pub argv: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFarm {
    pub name: String,
    pub listen: Option<String>,
    pub status: Option<String>,
    pub nodes: Option<Vec<RawFarmNode>>,
    pub distance_ms: Option<f64>,
    pub location: Option<RawLocation>,
    pub heartbeat: Option<RawHeartbeat>,
    pub summary_heartbeat: Option<RawHeartbeat>,
    #[serde(default)]
    pub local: BTreeMap<String, RawTier>,
    #[serde(default)]
    pub servers: Vec<RawServer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFarmNode {
    pub name: String,
    pub listen: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub name: String,
    pub address: Option<String>,
    pub addresses: Option<Vec<String>>,
    pub services: Vec<String>,
    pub mode: Option<String>,
    pub agent: Option<String>,
    #[serde(alias = "weight")]
    pub capacity: Option<f64>,
    pub probe_address: Option<String>,
    pub distance_ms: Option<f64>,
    pub location: Option<RawLocation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegion {
    pub name: String,
    pub clients: Option<Vec<String>>,
    pub geoip: Option<RawGeoip>,
    pub location: Option<RawLocation>,
    #[serde(default)]
    pub distance_ms: BTreeMap<String, f64>,
    pub dns: Option<RawRegionDns>,
    pub tsig: Option<RawTsig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeoip {
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub continents: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegionDns {
    pub servers: Vec<String>,
}

/// A duration as written: a humane string or a number of seconds.
#[derive(Debug, Clone)]
pub(crate) enum RawDuration {
    Text(String),
    Seconds(f64),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\" or \"2s\", or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Display for RawDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawDuration::Text(s) => write!(f, "\"{s}\""),
            RawDuration::Seconds(s) => write!(f, "{s}"),
        }
    }
}
