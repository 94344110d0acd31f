//! pgmoat's own connection to a target: TCP, TLS per the target's mode, StartupMessage,
//! and authentication with the held credentials (SCRAM-SHA-256, md5, cleartext, trust).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::SessionError;
use super::io::{read_message, ReadError};
use crate::config::{Target, UpstreamTlsMode};
use crate::net::stream::{MaybeTls, UpstreamStream};
use crate::protocol::backend::{field, parse_fields, parse_parameter_status};
use crate::protocol::backend_view::{Authentication, BackendKeyData, DataRow};
use crate::protocol::frame::{Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::sqlstate;

/// A server session that has reached its first ReadyForQuery.
pub struct Ready {
    pub stream: UpstreamStream,
    /// Bytes that arrived after ReadyForQuery (normally none).
    pub leftover: BytesMut,
    /// ParameterStatus and NoticeResponse messages, as sent, for the client.
    pub for_client: BytesMut,
    pub server_pid: i32,
    pub server_secret: i32,
    pub status: u8,
}

fn io_err(e: std::io::Error) -> SessionError {
    SessionError::UpstreamIo(e)
}

/// Open TCP (and TLS when the mode asks for it) to a target.
pub async fn connect(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<UpstreamStream, SessionError> {
    let tcp = tokio::time::timeout(
        timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| {
        SessionError::UpstreamIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connecting to {}:{} timed out", target.host, target.port),
        ))
    })?
    .map_err(io_err)?;
    tcp.set_nodelay(true).map_err(io_err)?;
    let Some(config) = tls.filter(|_| target.tls != UpstreamTlsMode::Disable) else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let mut tcp = tcp;
    let mut req = BytesMut::new();
    frontend::ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(io_err)?;
    let answer = tcp.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => {
            let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                SessionError::UpstreamIo(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            })?;
            let stream = TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
                .map_err(io_err)?;
            Ok(MaybeTls::Tls(Box::new(stream)))
        }
        b'N' if target.tls == UpstreamTlsMode::Prefer => Ok(MaybeTls::Plain(tcp)),
        b'N' => Err(SessionError::Upstream {
            code: sqlstate::CONNECTION_FAILURE.into(),
            message: format!(
                "pgmoat: target \"{}\" does not offer TLS, which its tls mode requires",
                target.name
            ),
        }),
        _ => Err(SessionError::UpstreamProtocol(
            "unexpected answer to SSLRequest".into(),
        )),
    }
}

fn read_err(e: ReadError) -> SessionError {
    match e {
        ReadError::Io(e) => SessionError::UpstreamIo(e),
        ReadError::Eof => SessionError::UpstreamClosed,
        ReadError::Frame(f) => SessionError::UpstreamProtocol(f.to_string()),
    }
}

fn password<'a>(target: &'a Target, method: &str) -> Result<&'a str, SessionError> {
    target.password.as_ref().map(|p| p.expose()).ok_or_else(|| SessionError::Upstream {
        code: sqlstate::CONNECTION_FAILURE.into(),
        message: format!(
            "pgmoat: target \"{}\" asks for {method} authentication but no password_env is configured",
            target.name
        ),
    })
}

/// Send the StartupMessage and authenticate; return once the server is ready.
pub async fn start(
    mut stream: UpstreamStream,
    target: &Target,
    params: &[(String, String)],
) -> Result<Ready, SessionError> {
    let mut out = BytesMut::with_capacity(512);
    let mut startup: Vec<(&str, &str)> =
        vec![("user", &target.user), ("database", &target.database)];
    startup.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    frontend::startup_message(startup, &mut out).map_err(io_err)?;
    stream.write_all(&out).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;

    let mut buf = BytesMut::with_capacity(8192);
    let mut for_client = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    let mut key = (0, 0);
    loop {
        let msg = read_message(
            &mut stream,
            &mut buf,
            Direction::Backend,
            LARGE_MESSAGE_LIMIT,
        )
        .await
        .map_err(read_err)?;
        let tag = msg[0];
        let body = &msg[5..];
        out.clear();
        match tag {
            b'R' => {
                let Ok(Authentication { code, data: body }) = Authentication::parse(body) else {
                    return Err(SessionError::UpstreamProtocol(
                        "short authentication message".into(),
                    ));
                };
                match code {
                    0 => {}
                    3 => frontend::password_message(
                        password(target, "cleartext")?.as_bytes(),
                        &mut out,
                    )
                    .map_err(io_err)?,
                    5 => {
                        let salt: [u8; 4] = body
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| {
                                SessionError::UpstreamProtocol("short md5 salt".into())
                            })?;
                        let hash = md5_hash(
                            target.user.as_bytes(),
                            password(target, "md5")?.as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut out).map_err(io_err)?;
                    }
                    10 => {
                        let offers_scram = body.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256");
                        if !offers_scram {
                            return Err(unsupported(
                                target,
                                "a SASL mechanism other than SCRAM-SHA-256",
                            ));
                        }
                        let s = ScramSha256::new(
                            password(target, "SCRAM")?.as_bytes(),
                            ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                            .map_err(io_err)?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            SessionError::UpstreamProtocol("SASL continue before start".into())
                        })?;
                        s.update(body)
                            .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?;
                        frontend::sasl_response(s.message(), &mut out).map_err(io_err)?;
                    }
                    12 => {
                        let mut s = scram.take().ok_or_else(|| {
                            SessionError::UpstreamProtocol("SASL final before start".into())
                        })?;
                        // Proves the server knows the verifier: a spoofed server fails here.
                        s.finish(body).map_err(|_| SessionError::Upstream {
                            code: sqlstate::CONNECTION_FAILURE.into(),
                            message: format!(
                                "pgmoat: target \"{}\" failed SCRAM server verification",
                                target.name
                            ),
                        })?;
                    }
                    other => {
                        return Err(unsupported(
                            target,
                            &format!("authentication method {other}"),
                        ))
                    }
                }
                if !out.is_empty() {
                    stream.write_all(&out).await.map_err(io_err)?;
                    stream.flush().await.map_err(io_err)?;
                }
            }
            b'S' => {
                if parse_parameter_status(body).is_none() {
                    return Err(SessionError::UpstreamProtocol(
                        "malformed ParameterStatus".into(),
                    ));
                }
                for_client.extend_from_slice(&msg);
            }
            b'N' => for_client.extend_from_slice(&msg),
            b'K' => {
                let Ok(k) = BackendKeyData::parse(body) else {
                    return Err(SessionError::UpstreamProtocol(
                        "short BackendKeyData".into(),
                    ));
                };
                key = (k.pid, k.secret);
            }
            b'v' => {} // NegotiateProtocolVersion: we asked for plain 3.0 and no options.
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                return Ok(Ready {
                    stream,
                    leftover: buf,
                    for_client,
                    server_pid: key.0,
                    server_secret: key.1,
                    status,
                });
            }
            b'E' => {
                let fields = parse_fields(body);
                let code = field(&fields, b'C').to_owned();
                let message = field(&fields, b'M').to_owned();
                tracing::warn!(target = %target.name, %code, %message, "server refused pgmoat's connection");
                if code.starts_with("28") {
                    // Say what failed without naming the held user or hinting at its password.
                    return Err(SessionError::Upstream {
                        code: sqlstate::CONNECTION_FAILURE.into(),
                        message: format!(
                            "pgmoat: could not authenticate to target \"{}\"",
                            target.name
                        ),
                    });
                }
                return Err(SessionError::Upstream { code, message });
            }
            other => {
                return Err(SessionError::UpstreamProtocol(format!(
                    "unexpected message '{}' during startup",
                    other as char
                )))
            }
        }
    }
}

fn unsupported(target: &Target, what: &str) -> SessionError {
    SessionError::Upstream {
        code: sqlstate::FEATURE_NOT_SUPPORTED.into(),
        message: format!(
            "pgmoat: target \"{}\" asks for {what}, which pgmoat does not support",
            target.name
        ),
    }
}

/// Send a CancelRequest for a server session.
pub async fn cancel(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    pid: i32,
    secret: i32,
    timeout: Duration,
) -> Result<(), SessionError> {
    // Servers read cancels before TLS is required, so only go through TLS when the
    // target insists on it.
    let tls = tls.filter(|_| {
        matches!(
            target.tls,
            UpstreamTlsMode::Require | UpstreamTlsMode::VerifyFull
        )
    });
    let mut stream = connect(target, tls, timeout).await?;
    let mut out = BytesMut::new();
    frontend::cancel_request(pid, secret, &mut out);
    stream.write_all(&out).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    // The server closes without answering; wait for that so the cancel is delivered.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(timeout, stream.read(&mut sink)).await;
    Ok(())
}

/// Run one simple query on a ready connection and return its rows as text, for the
/// catalog lookups pgmoat makes on its own side connection.
pub async fn simple_query(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, SessionError> {
    let mut out = BytesMut::new();
    frontend::query(sql, &mut out).map_err(io_err)?;
    stream.write_all(&out).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    let mut rows = Vec::new();
    let mut failure = None;
    loop {
        let msg = read_message(stream, buf, Direction::Backend, LARGE_MESSAGE_LIMIT)
            .await
            .map_err(read_err)?;
        let body = &msg[5..];
        match msg[0] {
            b'D' => {
                let Ok(d) = DataRow::parse(body) else {
                    return Err(SessionError::UpstreamProtocol("short DataRow".into()));
                };
                let row: Vec<Option<String>> = d
                    .values
                    .iter()
                    .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect();
                rows.push(row);
            }
            b'E' => {
                let fields = parse_fields(body);
                failure = Some(SessionError::Upstream {
                    code: field(&fields, b'C').to_owned(),
                    message: field(&fields, b'M').to_owned(),
                });
            }
            b'Z' => {
                return match failure {
                    Some(e) => Err(e),
                    None => Ok(rows),
                }
            }
            _ => {}
        }
    }
}

/// Say goodbye on a side connection.
pub async fn terminate(stream: &mut UpstreamStream) -> std::io::Result<()> {
    stream.write_all(&[b'X', 0, 0, 0, 4]).await?;
    stream.shutdown().await
}
