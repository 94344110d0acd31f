//! RFC 5424 syslog over UDP (one record per datagram) or TCP (RFC 6587 octet-counting
//! framing), facility "log audit" (13), severity informational.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::time::{format_micros, now_micros};

/// PRI = facility 13 (log audit) * 8 + severity 6 (informational).
const PRI: u8 = 13 * 8 + 6;
const RETRY_AFTER: Duration = Duration::from_secs(1);

enum Transport {
    Udp(Option<UdpSocket>),
    Tcp(Option<TcpStream>),
}

pub struct Syslog {
    address: String,
    transport: Transport,
    hostname: String,
    pid: u32,
    /// After a failed connect, lines fail fast until this passes.
    retry_at: Option<Instant>,
}

impl Syslog {
    /// `udp://host:port` or `tcp://host:port`.
    pub fn new(address: &str) -> Result<Syslog, String> {
        let (transport, rest) = if let Some(r) = address.strip_prefix("udp://") {
            (Transport::Udp(None), r)
        } else if let Some(r) = address.strip_prefix("tcp://") {
            (Transport::Tcp(None), r)
        } else {
            return Err(format!(
                "audit syslog address {address:?} must be udp://host:port or tcp://host:port"
            ));
        };
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
            _ => return Err(format!("audit syslog address {address:?} needs host:port")),
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        Ok(Syslog {
            address: rest.to_owned(),
            transport,
            hostname,
            pid: std::process::id(),
            retry_at: None,
        })
    }

    /// `<110>1 TIMESTAMP HOST pgmoat PID MSGID - BOM MSG`
    pub fn format(&self, line: &str) -> Vec<u8> {
        let msgid = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .filter(|t| !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "-".into());
        let mut out = format!(
            "<{PRI}>1 {} {} pgmoat {} {msgid} - ",
            format_micros(now_micros()),
            self.hostname,
            self.pid
        )
        .into_bytes();
        // RFC 5424 §6.4: a UTF-8 MSG starts with the byte order mark.
        out.extend_from_slice("\u{feff}".as_bytes());
        out.extend_from_slice(line.as_bytes());
        out
    }

    pub async fn send(&mut self, line: &str) -> Result<(), String> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(format!("{} is unreachable; retrying shortly", self.address));
        }
        let msg = self.format(line);
        let r = self.send_raw(&msg).await;
        if r.is_err() {
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        } else {
            self.retry_at = None;
        }
        r
    }

    async fn send_raw(&mut self, msg: &[u8]) -> Result<(), String> {
        let addr = self.address.clone();
        match &mut self.transport {
            Transport::Udp(sock) => {
                if sock.is_none() {
                    let bind = if addr.starts_with('[') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    };
                    let s = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
                    s.connect(&addr).await.map_err(|e| format!("{addr}: {e}"))?;
                    *sock = Some(s);
                }
                let s = sock.as_ref().ok_or("no socket")?;
                if let Err(e) = s.send(msg).await {
                    *sock = None;
                    return Err(format!("{addr}: {e}"));
                }
                Ok(())
            }
            Transport::Tcp(conn) => {
                if conn.is_none() {
                    let c = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr))
                        .await
                        .map_err(|_| format!("{addr}: connect timed out"))?
                        .map_err(|e| format!("{addr}: {e}"))?;
                    *conn = Some(c);
                }
                let c = conn.as_mut().ok_or("no connection")?;
                let mut framed = format!("{} ", msg.len()).into_bytes();
                framed.extend_from_slice(msg);
                if let Err(e) = c.write_all(&framed).await {
                    *conn = None;
                    return Err(format!("{addr}: {e}"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_shape() {
        let s = Syslog::new("udp://127.0.0.1:514").unwrap();
        let m = String::from_utf8(s.format(r#"{"seq":1,"type":"statement"}"#)).unwrap();
        let parts: Vec<&str> = m.splitn(7, ' ').collect();
        assert_eq!(parts[0], "<110>1");
        assert!(parts[1].ends_with('Z'), "{m}");
        assert_eq!(parts[3], "pgmoat");
        assert_eq!(parts[5], "statement");
        assert_eq!(parts[6], "- \u{feff}{\"seq\":1,\"type\":\"statement\"}");
        assert!(Syslog::new("udp://nope").is_err());
        assert!(Syslog::new("http://h:1").is_err());
    }

    #[tokio::test]
    async fn udp_and_tcp_deliver() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut s = Syslog::new(&format!("udp://{}", udp.local_addr().unwrap())).unwrap();
        s.send(r#"{"type":"head"}"#).await.unwrap();
        let mut buf = [0u8; 2048];
        let n = udp.recv(&mut buf).await.unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with(r#"{"type":"head"}"#));

        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut s = Syslog::new(&format!("tcp://{}", l.local_addr().unwrap())).unwrap();
        s.send("{}").await.unwrap();
        let (mut c, _) = l.accept().await.unwrap();
        let mut got = vec![0u8; 512];
        let n = tokio::io::AsyncReadExt::read(&mut c, &mut got)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&got[..n]).into_owned();
        let (len, rest) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    }
}
