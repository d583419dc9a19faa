//! The embedded server's front: its UDP and TCP sockets, and the choice of the view (one
//! hickory `Catalog` per region, plus the default one) that answers each request.
//!
//! hickory-server's own `Server` parses a request before any handler sees it and answers
//! FORMERR when an ECS option does not parse; fedlb must answer such a query by its source
//! address instead, so it reads the sockets itself and hands hickory's `Catalog` a request it
//! can parse (see [`crate::ecs`]). The rest is what hickory's `Server` does: one task per UDP
//! request, one per TCP connection (requests answered in order, idle limit), responses to a
//! QR=1 message never sent (no reflection), FORMERR for a message that does not parse.
//!
//! Routing, as BIND views matched by key first and then by client:
//! - an UPDATE goes to the view whose TSIG key signs it; unsigned, or signed with a key no
//!   view has, it goes to the default view, which refuses it unless the key is its own;
//! - a QUERY signed (verifiably, in time) with a view's key goes to that view, so that a
//!   publisher reads back the view it writes (`Rfc2136Config::sign_reads`);
//! - a QUERY goes to the view of the client's region: the ECS option's subnet when valid,
//!   else the source address; a region without a view gets the default view. When ECS was
//!   used, the answer echoes it with the SCOPE PREFIX-LENGTH of the classification;
//! - anything else goes to the default view.
//!
//! Zone transfers (AXFR, and IXFR answered with the whole zone as RFC 1995 §4 allows: hickory
//! keeps no history) are served only over TCP, only to a listed secondary's address, and only
//! when signed: a secondary transfers the view of the key that signs its request (a view's
//! transfer key, or one of its update keys), as BIND views match a transfer by key. Unsigned,
//! from elsewhere or over UDP: REFUSED. A transfer-only key cannot update (REFUSED): a
//! secondary holding it can read the zone but never write it. After every UPDATE answered
//! NOERROR the secondaries are notified ([`crate::notify`]).
//!
//! Spreading (when asked): a client's QUERY (not verifiably signed with one of the server's
//! keys) for A or AAAA whose answer holds several addresses of the name is answered with one
//! of them, picked by the view's weights ([`crate::AnswerWeights`]) with the core's pick
//! rules. With `hashed`, the client is its ECS subnet when the query has one (then the echo's
//! scope is at least the /24 or /56 the pick is keyed by, so resolvers cache the pick per
//! subnet), else its source address.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use fedlb_core::{
    ClientMap, RegionId, Spread,
    spread::{self, client_key},
};
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        RData, Record, RecordType, TSigResponseContext, TSigner,
        rdata::opt::{ClientSubnet, EdnsOption},
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{
    net::{NetError, runtime::TokioTime, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{Catalog, LookupError, LookupOptions, MessageResponse, MessageResponseBuilder},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use crate::{
    AnswerWeights,
    ecs::{EcsScan, scan},
    geoip::GeoDb,
    notify::Notifier,
};

/// One region's view: its zone copy.
pub(crate) struct View {
    pub(crate) region: RegionId,
    pub(crate) catalog: Catalog,
}

/// A TSIG key the server knows: the view it belongs to (`None`: the default view) and
/// whether it may only sign transfers.
pub(crate) struct ViewKey {
    pub(crate) signer: TSigner,
    pub(crate) view: Option<usize>,
    pub(crate) transfer_only: bool,
}

/// Every view of the zone and how to choose one.
pub(crate) struct Views {
    pub(crate) default: Catalog,
    pub(crate) views: Vec<View>,
    /// For each region of `clients` (by index), its view.
    pub(crate) region_view: Vec<Option<usize>>,
    /// Every key and its view.
    pub(crate) keys: Vec<ViewKey>,
    /// The only addresses zone transfers are served to.
    pub(crate) secondaries: Vec<IpAddr>,
    /// Tells the secondaries about changes (none without secondaries).
    pub(crate) notifier: Option<Notifier>,
    pub(crate) clients: Arc<ClientMap>,
    pub(crate) geo: Option<GeoDb>,
    pub(crate) spread: Spread,
    pub(crate) weights: AnswerWeights,
    /// An UPDATE is applied alone, every other request shares: hickory applies an update
    /// record by record (a replaced RRset is deleted, then added), so a query answered in
    /// between would see the name empty. Updates are rare; queries wait at most one.
    pub(crate) gate: tokio::sync::RwLock<()>,
}

/// Where a request goes: the view (`None`: the default one), the ECS option to echo, and
/// whether it is a client's query (which spreading applies to).
struct Route {
    view: Option<usize>,
    echo: Option<ClientSubnet>,
    client_query: bool,
}

impl Views {
    /// Answers one raw request; returns the messages to send back (none for a message that
    /// is not a request).
    pub(crate) async fn handle(
        &self,
        mut raw: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Vec<Vec<u8>> {
        let mut ecs = None;
        if !self.views.is_empty() || self.spread == Spread::Hashed {
            match scan(&raw) {
                EcsScan::Absent => {}
                EcsScan::Valid(subnet) => ecs = Some(subnet),
                EcsScan::Malformed { reason, stripped } => {
                    debug!(%src, reason, "malformed client subnet option; answering by source address");
                    raw = stripped;
                }
            }
        }
        // shorter than a header: not DNS, no answer (as hickory's server)
        let Ok(header) = Header::read(&mut BinDecoder::new(&raw)) else {
            return Vec::new();
        };
        if header.metadata.message_type == MessageType::Response {
            return Vec::new();
        }
        let request = match Request::from_bytes(raw, src, protocol) {
            Ok(request) => request,
            Err(e) => return form_error(&e.to_string(), src, &header),
        };
        let responder = Responder {
            protocol,
            echo: None,
            out: Arc::default(),
        };
        if is_transfer(&request) {
            return self.transfer(&request, responder).await;
        }
        if request.metadata.op_code == OpCode::Update
            && self.key(&request).is_some_and(|k| k.transfer_only)
        {
            debug!(%src, "update signed with a transfer-only key; refused");
            return refuse(&request);
        }
        let route = self.route(&request, ecs);
        let responder = Responder {
            echo: route.echo,
            ..responder
        };
        let catalog = self.catalog(route.view);
        if request.metadata.op_code == OpCode::Update {
            let info = {
                let _alone = self.gate.write().await;
                catalog
                    .handle_request::<_, TokioTime>(&request, responder.clone())
                    .await
            };
            if info.response_code == ResponseCode::NoError
                && let Some(notifier) = &self.notifier
            {
                notifier.changed();
            }
        } else {
            let _shared = self.gate.read().await;
            catalog
                .handle_request::<_, TokioTime>(&request, responder.clone())
                .await;
        }
        let replies = std::mem::take(&mut *responder.out.lock().unwrap_or_else(|e| e.into_inner()));
        // hickory answers a signed query unsigned; a secondary signs its SOA refresh query
        // with its transfer key and drops an unsigned answer (BIND: "expected a TSIG"). A
        // signed query (a secondary's, or the publisher's read-back) gets the whole set.
        if let Some(key) = self.verified_key(&request)
            && request.metadata.op_code == OpCode::Query
        {
            debug!(%src, key = %key.signer.signer_name(), "signed query answered");
            return replies
                .into_iter()
                .filter_map(|reply| sign_reply(reply, &request, &key.signer))
                .collect();
        }
        if self.spread == Spread::All || !route.client_query {
            return replies;
        }
        let client = match ecs {
            Some(s) => client_key(s.addr(), Some(s.source_prefix())),
            None => client_key(src.ip(), None),
        };
        let region = route.view.map(|v| &self.views[v].region);
        replies
            .into_iter()
            .map(|reply| self.spread_reply(reply, region, client))
            .collect()
    }

    fn route(&self, request: &Request, ecs: Option<ClientSubnet>) -> Route {
        let plain = |view, client_query| Route {
            view,
            echo: None,
            client_query,
        };
        let is_query = request.metadata.op_code == OpCode::Query;
        // a publisher reads back what it wrote with a signed query: never spread
        let signed = request.signature.is_some() && self.verified_key_view(request).is_some();
        if self.views.is_empty() {
            let echo = match (self.spread, ecs) {
                (Spread::Hashed, Some(s)) if is_query && !signed => Some(ClientSubnet::new(
                    s.addr(),
                    s.source_prefix(),
                    client_key(s.addr(), Some(s.source_prefix())).prefix_len(),
                )),
                _ => None,
            };
            return Route {
                view: None,
                echo,
                client_query: is_query && !signed,
            };
        }
        match request.metadata.op_code {
            // the view's own zone handler checks the signature
            OpCode::Update => plain(self.key_view(request).flatten(), false),
            OpCode::Query if request.signature.is_some() => match self.verified_key_view(request) {
                Some(view) => plain(view, false),
                None => self.by_client(request, ecs),
            },
            OpCode::Query => self.by_client(request, ecs),
            _ => plain(None, false),
        }
    }

    /// A reply with the queried name's A or AAAA set cut to one address, picked by the
    /// view's weights; any other reply as it is.
    fn spread_reply(
        &self,
        reply: Vec<u8>,
        region: Option<&RegionId>,
        client: ipnet::IpNet,
    ) -> Vec<u8> {
        let Ok(mut msg) = Message::from_vec(&reply) else {
            return reply;
        };
        let Some(query) = msg.queries.first() else {
            return reply;
        };
        let qtype = query.query_type();
        if !matches!(qtype, RecordType::A | RecordType::AAAA) {
            return reply;
        }
        let mut name = query.name().to_lowercase();
        name.set_fqdn(true);
        let set: Vec<(usize, std::net::IpAddr)> = msg
            .answers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.name.to_lowercase() == name)
            .filter_map(|(i, r)| match &r.data {
                RData::A(a) => Some((i, std::net::IpAddr::V4(a.0))),
                RData::AAAA(a) => Some((i, std::net::IpAddr::V6(a.0))),
                _ => None,
            })
            .collect();
        if set.len() < 2 {
            return reply;
        }
        let addresses: Vec<std::net::IpAddr> = set.iter().map(|(_, a)| *a).collect();
        let Some(weights) = self.weights.weigh(region, &name, &addresses) else {
            return reply;
        };
        let members: Vec<_> = addresses.iter().copied().zip(weights).collect();
        let picked = spread::pick(self.spread, &members, client, &mut rand::rng());
        let Some(keep) = picked.map(|p| set[p].0) else {
            return reply;
        };
        let drop: Vec<usize> = set.iter().map(|(i, _)| *i).filter(|i| *i != keep).collect();
        let mut i = 0;
        msg.answers.retain(|_| {
            let gone = drop.contains(&i);
            i += 1;
            !gone
        });
        msg.to_vec().unwrap_or(reply)
    }

    fn catalog(&self, view: Option<usize>) -> &Catalog {
        view.map_or(&self.default, |v| &self.views[v].catalog)
    }

    /// The known key named in the request's TSIG record.
    fn key(&self, request: &Request) -> Option<&ViewKey> {
        let name = &request.signature.as_ref()?.name;
        self.keys.iter().find(|k| k.signer.signer_name() == name)
    }

    /// The view of the key named in the request's TSIG record, if a known key.
    fn key_view(&self, request: &Request) -> Option<Option<usize>> {
        self.key(request).map(|k| k.view)
    }

    /// Serves a zone transfer to a listed secondary that signs it, from the view of its key.
    async fn transfer(&self, request: &Request, responder: Responder) -> Vec<Vec<u8>> {
        let src = request.src();
        let refused = if !self.secondaries.contains(&src.ip()) {
            Some("not from a listed secondary")
        } else if responder.protocol != Protocol::Tcp {
            Some("not over tcp")
        } else if request.signature.is_none() {
            Some("not signed with a transfer key")
        } else {
            None
        };
        if let Some(why) = refused {
            warn!(%src, why, "zone transfer refused");
            return refuse(request);
        }
        debug!(%src, "zone transfer requested");
        // an unknown key goes to the default view, whose handler answers NOTAUTH/BADKEY
        let catalog = self.catalog(self.key_view(request).flatten());
        let _shared = self.gate.read().await;
        serve_transfer(catalog, request, responder.clone()).await;
        std::mem::take(&mut *responder.out.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The view of the key that signed a query, if the signature verifies and is in time
    /// (RFC 8945 §5.2): fedlb's publishers sign their reads so that they read the view they
    /// write. A query with a bad signature is answered like an unsigned one (no secret is
    /// behind an answer: any client of the region may read it).
    fn verified_key_view(&self, request: &Request) -> Option<Option<usize>> {
        self.verified_key(request).map(|k| k.view)
    }

    /// The key that signed the request, if the signature verifies and is in time.
    fn verified_key(&self, request: &Request) -> Option<&ViewKey> {
        let name = &request.signature.as_ref()?.name;
        let key = self.keys.iter().find(|k| k.signer.signer_name() == name)?;
        let (_, _, window) = key
            .signer
            .verify_message_byte(request.as_slice(), None, true)
            .ok()?;
        window.contains(&unix_now()).then_some(key)
    }

    /// The view of the client's region (ECS subnet or source address), and the ECS echo
    /// (with `hashed` spreading, its scope covers at least the subnet the pick is keyed by).
    fn by_client(&self, request: &Request, ecs: Option<ClientSubnet>) -> Route {
        let (addr, source) = match ecs {
            Some(s) => (s.addr(), Some(s.source_prefix())),
            None => (request.src().ip(), None),
        };
        let geo = match &self.geo {
            Some(db) if self.clients.wants_geoip() => Some(db.lookup(addr)),
            _ => None,
        };
        let class = self.clients.classify(addr, source, geo.as_ref());
        let view = class.index.and_then(|i| self.region_view[i]);
        let echo = ecs.map(|s| {
            let scope = match self.spread {
                Spread::Hashed => class
                    .scope
                    .max(client_key(s.addr(), Some(s.source_prefix())).prefix_len()),
                _ => class.scope,
            };
            ClientSubnet::new(s.addr(), s.source_prefix(), scope)
        });
        Route {
            view,
            echo,
            client_query: true,
        }
    }

    /// The region of each view, for logs.
    pub(crate) fn regions(&self) -> impl Iterator<Item = &RegionId> {
        self.views.iter().map(|v| &v.region)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `reply` with a TSIG record appended, signed with `signer` over the request's MAC
/// (RFC 8945 §5.3: the TSIG goes last and ARCOUNT counts it).
fn sign_reply(mut reply: Vec<u8>, request: &Request, signer: &TSigner) -> Option<Vec<u8>> {
    let mac = request.signature.as_ref()?.data.mac.clone();
    let context =
        TSigResponseContext::new(request.metadata.id, unix_now(), signer.clone(), mac, None);
    let signature = match context.sign(&reply) {
        Ok(s) => s,
        Err(error) => {
            warn!(%error, "answer to a signed query not signed; dropped");
            return None;
        }
    };
    let mut tsig = Vec::with_capacity(128);
    if let Err(error) = signature.emit(&mut BinEncoder::new(&mut tsig)) {
        warn!(%error, "answer to a signed query not signed; dropped");
        return None;
    }
    let additional = u16::from_be_bytes([*reply.get(10)?, *reply.get(11)?]).checked_add(1)?;
    reply[10..12].copy_from_slice(&additional.to_be_bytes());
    reply.extend_from_slice(&tsig);
    Some(reply)
}

fn is_transfer(request: &Request) -> bool {
    request.metadata.op_code == OpCode::Query
        && request
            .queries
            .queries()
            .first()
            .is_some_and(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR))
}

/// An unsigned REFUSED for `request`.
fn refuse(request: &Request) -> Vec<Vec<u8>> {
    Message::error_msg(
        request.metadata.id,
        request.metadata.op_code,
        ResponseCode::Refused,
    )
    .to_vec()
    .map(|m| vec![m])
    .unwrap_or_default()
}

/// The whole zone in one message, signed with the request's key, as hickory's catalog answers
/// an AXFR: written here because the catalog answers an IXFR as a plain query (no records),
/// which secondaries take for a failed transfer. The handler checks the signature
/// (`AxfrPolicy::AllowSigned`).
async fn serve_transfer(catalog: &Catalog, request: &Request, mut responder: Responder) {
    let now = unix_now();
    let mut metadata = Metadata::response_from_request(&request.metadata);
    let handler = request
        .queries
        .queries()
        .first()
        .and_then(|q| catalog.find(q.name()).map(|h| (q, h)))
        .and_then(|(q, h)| h.first().filter(|h| h.origin() == q.name()));
    let Some(handler) = handler else {
        // a name that is not the zone's apex
        metadata.response_code = ResponseCode::NotAuth;
        let response =
            MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
        let _ = responder.send_response(response).await;
        return;
    };
    let Some((result, signer)) = handler
        .zone_transfer(request, LookupOptions::default(), now)
        .await
    else {
        metadata.response_code = ResponseCode::ServFail;
        let response =
            MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
        let _ = responder.send_response(response).await;
        return;
    };
    let transfer = match result {
        Ok(transfer) => {
            metadata.response_code = ResponseCode::NoError;
            metadata.authoritative = true;
            Some(transfer)
        }
        Err(LookupError::ResponseCode(code)) => {
            metadata.response_code = code;
            None
        }
        Err(error) => {
            warn!(%error, "zone transfer failed");
            metadata.response_code = ResponseCode::ServFail;
            None
        }
    };
    let build = || {
        MessageResponseBuilder::new(&request.queries, None).build(
            metadata,
            transfer.iter().flat_map(|t| t.iter()),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        )
    };
    let mut response = build();
    if let Some(signer) = signer {
        let mut tbs = Vec::with_capacity(4096);
        let signature = build()
            .destructive_emit(&mut BinEncoder::new(&mut tbs))
            .map_err(|e| e.to_string())
            .and_then(|_| signer.sign(&tbs).map_err(|e| e.to_string()));
        match signature {
            Ok(signature) => response.set_signature(signature),
            Err(error) => {
                warn!(%error, "zone transfer not signed; SERVFAIL");
                metadata.response_code = ResponseCode::ServFail;
                let response =
                    MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
                let _ = responder.send_response(response).await;
                return;
            }
        }
    }
    if let Err(error) = responder.send_response(response).await {
        warn!(%error, "zone transfer not sent");
    }
}

/// FORMERR for a request that does not parse (when its header does), as hickory's server
/// answers it.
fn form_error(error: &str, src: SocketAddr, header: &Header) -> Vec<Vec<u8>> {
    debug!(%src, %error, "request does not parse; FORMERR");
    Message::error_msg(
        header.metadata.id,
        header.metadata.op_code,
        ResponseCode::FormErr,
    )
    .to_vec()
    .map(|m| vec![m])
    .unwrap_or_default()
}

/// Encodes hickory's responses into buffers for the socket loop to send, adding the ECS
/// echo to the response's OPT record.
#[derive(Clone)]
struct Responder {
    protocol: Protocol,
    echo: Option<ClientSubnet>,
    out: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn with_edns<'q, 'a, A, N, S, D>(
    mut response: MessageResponse<'q, 'a, A, N, S, D>,
    edns: &'q Edns,
) -> MessageResponse<'q, 'a, A, N, S, D>
where
    A: Iterator<Item = &'a Record> + Send + 'a,
    N: Iterator<Item = &'a Record> + Send + 'a,
    S: Iterator<Item = &'a Record> + Send + 'a,
    D: Iterator<Item = &'a Record> + Send + 'a,
{
    response.set_edns(edns);
    response
}

#[async_trait::async_trait]
impl ResponseHandler for Responder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let echoed: Option<Edns> = match (self.echo, response.edns()) {
            (Some(subnet), Some(edns)) => {
                let mut edns = edns.clone();
                edns.options_mut().insert(EdnsOption::Subnet(subnet));
                Some(edns)
            }
            _ => None,
        };
        let response = match &echoed {
            Some(edns) => with_edns(response, edns),
            None => response,
        };
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let id = response.metadata().id;
        let op_code = response.metadata().op_code;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, id, "response does not encode; SERVFAIL");
                let msg = Message::error_msg(id, op_code, ResponseCode::ServFail);
                bytes = msg.to_vec()?;
                ResponseInfo::from(Header {
                    metadata: msg.metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bytes);
        Ok(info)
    }
}

/// Reads the UDP socket until `stop`; each request is answered in its own task.
pub(crate) async fn serve_udp(
    socket: Arc<UdpSocket>,
    views: Arc<Views>,
    tasks: TaskTracker,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, src) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            got = socket.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted) => return Err(e),
                Err(e) => {
                    debug!(error = %e, "udp receive failed");
                    continue;
                }
            },
        };
        if src.port() == 0 {
            continue;
        }
        let raw = buf[..n].to_vec();
        let (socket, views) = (socket.clone(), views.clone());
        tasks.spawn(async move {
            for reply in views.handle(raw, src, Protocol::Udp).await {
                if let Err(e) = socket.send_to(&reply, src).await {
                    debug!(%src, error = %e, "udp send failed");
                }
            }
        });
    }
}

/// Accepts TCP connections until `stop`; each connection is served in its own task.
pub(crate) async fn serve_tcp(
    listener: TcpListener,
    views: Arc<Views>,
    idle: Duration,
    tasks: TaskTracker,
    stop: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (stream, src) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            got = listener.accept() => match got {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted) => return Err(e),
                Err(e) => {
                    debug!(error = %e, "tcp accept failed");
                    continue;
                }
            },
        };
        if src.port() == 0 {
            continue;
        }
        let (views, stop) = (views.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = serve_connection(stream, src, &views, idle, &stop).await {
                debug!(%src, error = %e, "tcp connection closed");
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    views: &Views,
    idle: Duration,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            read = tokio::time::timeout(idle, stream.read_exact(&mut len)) => match read {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => { r?; }
            },
        }
        let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(idle, stream.read_exact(&mut raw))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request body"))??;
        for reply in views.handle(raw, src, Protocol::Tcp).await {
            let Ok(len) = u16::try_from(reply.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await?;
        }
    }
}
