//! A typed client for the r5e API: discovery, resources, tables, watch and the audit log, over
//! HTTPS with the server's own CA. The CLI uses it; so can anyone.

use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error `Status`.
    #[error("{message} ({code} {reason})")]
    Api { code: u16, reason: String, message: String },
    /// The server could not be reached or answered something unreadable.
    #[error("cannot talk to the server: {0}")]
    Transport(String),
    /// The request cannot be made as asked.
    #[error("{0}")]
    Invalid(String),
}

/// A kind the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl ApiResource {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// The collection path, in `namespace` (or across all, or cluster-scoped, when `None`).
    pub fn path(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/apis/{}/{}/namespaces/{ns}/{}", self.group, self.version, self.plural),
            _ => format!("/apis/{}/{}/{}", self.group, self.version, self.plural),
        }
    }

    fn is_named(&self, name: &str) -> bool {
        let qualified = format!("{}.{}", self.plural, self.group);
        [&self.kind, &self.plural, &self.singular, &qualified]
            .into_iter()
            .chain(&self.short_names)
            .any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// A connection to one server as one identity.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

fn transport(e: reqwest::Error) -> Error {
    Error::Transport(e.to_string())
}

impl Client {
    /// A client for `server` (`https://host:port`), trusting `ca_pem` as well as the usual roots.
    pub fn new(server: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Client, Error> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Invalid(format!("the CA is not valid PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(transport)?;
        Ok(Client { base: server.trim_end_matches('/').to_string(), token: token.to_string(), http })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, &Value)>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some((content_type, body)) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(body.to_string());
        }
        let res = req.send().await.map_err(transport)?;
        if res.status().is_success() {
            return Ok(res);
        }
        let code = res.status().as_u16();
        let status: Value = res.json().await.unwrap_or_default();
        Err(Error::Api {
            code,
            reason: status["reason"].as_str().unwrap_or("").to_string(),
            message: status["message"].as_str().unwrap_or("the server refused the request").to_string(),
        })
    }

    async fn json(&self, method: Method, path: &str, body: Option<(&str, &Value)>) -> Result<Value, Error> {
        self.send(method, path, body, None).await?.json().await.map_err(transport)
    }

    /// Every kind the server serves.
    pub async fn discover(&self) -> Result<Vec<ApiResource>, Error> {
        let groups = self.json(Method::GET, "/apis", None).await?;
        let mut out = Vec::new();
        for g in groups["groups"].as_array().into_iter().flatten() {
            let gv = g["preferredVersion"]["groupVersion"].as_str().unwrap_or_default();
            let list = self.json(Method::GET, &format!("/apis/{gv}"), None).await?;
            let (group, version) = gv.split_once('/').unwrap_or(("", gv));
            for r in list["resources"].as_array().into_iter().flatten() {
                let plural = r["name"].as_str().unwrap_or_default();
                if plural.contains('/') {
                    continue;
                }
                out.push(ApiResource {
                    group: group.into(),
                    version: version.into(),
                    kind: r["kind"].as_str().unwrap_or_default().into(),
                    plural: plural.into(),
                    singular: r["singularName"].as_str().unwrap_or_default().into(),
                    short_names: r["shortNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(true),
                });
            }
        }
        Ok(out)
    }

    /// The kind a user names (`task`, `tasks`, `tk`, `Task`, `tasks.r5e.ai`).
    pub async fn resolve(&self, name: &str) -> Result<ApiResource, Error> {
        let all = self.discover().await?;
        all.iter().find(|r| r.is_named(name)).cloned().ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|r| r.plural.as_str()).collect();
            Error::Invalid(format!("the server has no kind `{name}`: it serves {}", known.join(", ")))
        })
    }

    /// The kind of a manifest (`apiVersion` + `kind`).
    pub async fn resolve_kind(&self, api_version: &str, kind: &str) -> Result<ApiResource, Error> {
        self.discover()
            .await?
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .ok_or_else(|| Error::Invalid(format!("the server does not serve {kind} in {api_version}")))
    }

    /// One object, or `None` if it does not exist.
    pub async fn get(&self, r: &ApiResource, namespace: Option<&str>, name: &str) -> Result<Option<Value>, Error> {
        match self.json(Method::GET, &format!("{}/{name}", r.path(namespace)), None).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::Api { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A Table of one object or of a list (`kubectl get` style).
    pub async fn table(
        &self,
        r: &ApiResource,
        namespace: Option<&str>,
        name: Option<&str>,
        selector: Option<&str>,
    ) -> Result<Value, Error> {
        let mut path = match name {
            Some(n) => format!("{}/{n}", r.path(namespace)),
            None => r.path(namespace),
        };
        if let Some(s) = selector {
            path.push_str(&format!("?labelSelector={}", encode(s)));
        }
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io";
        self.send(Method::GET, &path, None, Some(accept)).await?.json().await.map_err(transport)
    }

    /// A list.
    pub async fn list(&self, r: &ApiResource, namespace: Option<&str>, selector: Option<&str>) -> Result<Value, Error> {
        let path = match selector {
            Some(s) => format!("{}?labelSelector={}", r.path(namespace), encode(s)),
            None => r.path(namespace),
        };
        self.json(Method::GET, &path, None).await
    }

    /// Create an object.
    pub async fn create(&self, r: &ApiResource, namespace: Option<&str>, object: &Value) -> Result<Value, Error> {
        self.json(Method::POST, &r.path(namespace), Some(("application/json", object))).await
    }

    /// Replace an object.
    pub async fn replace(
        &self,
        r: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<Value, Error> {
        self.json(Method::PUT, &format!("{}/{name}", r.path(namespace)), Some(("application/json", object))).await
    }

    /// Delete an object; returns its final state.
    pub async fn delete(&self, r: &ApiResource, namespace: Option<&str>, name: &str) -> Result<Value, Error> {
        self.json(Method::DELETE, &format!("{}/{name}", r.path(namespace)), None).await
    }

    /// What admission would decide for `operation` on `object`, and why.
    pub async fn explain(&self, operation: &str, object: &Value) -> Result<Value, Error> {
        self.json(
            Method::POST,
            "/r5e/v1/explain",
            Some(("application/json", &json!({"operation": operation, "object": object}))),
        )
        .await
    }

    /// Watch events (`{"type", "object"}`) until the server ends the stream.
    pub async fn watch(
        &self,
        r: &ApiResource,
        namespace: Option<&str>,
        selector: Option<&str>,
    ) -> Result<impl Stream<Item = Result<Value, Error>>, Error> {
        let mut path = format!("{}?watch=true", r.path(namespace));
        if let Some(s) = selector {
            path.push_str(&format!("&labelSelector={}", encode(s)));
        }
        let res = self.send(Method::GET, &path, None, None).await?;
        let mut buffer = Vec::new();
        Ok(res.bytes_stream().flat_map(move |chunk| {
            let mut out = Vec::new();
            match chunk {
                Ok(bytes) => {
                    buffer.extend_from_slice(&bytes);
                    while let Some(i) = buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buffer.drain(..=i).collect();
                        out.push(
                            serde_json::from_slice(&line)
                                .map_err(|e| Error::Transport(format!("a watch event is not JSON: {e}"))),
                        );
                    }
                }
                Err(e) => out.push(Err(transport(e))),
            }
            futures::stream::iter(out)
        }))
    }

    /// Stored events as JSON Lines (canonical bytes), `from` seq on, at most `limit`.
    pub async fn events(
        &self,
        from: u64,
        limit: usize,
        types: &[String],
        subject: Option<&str>,
    ) -> Result<Vec<u8>, Error> {
        let mut path = format!("/r5e/v1/events?from={from}&limit={limit}");
        if !types.is_empty() {
            path.push_str(&format!("&type={}", encode(&types.join(","))));
        }
        if let Some(s) = subject {
            path.push_str(&format!("&subject={}", encode(s)));
        }
        let res = self.send(Method::GET, &path, None, None).await?;
        Ok(res.bytes().await.map_err(transport)?.to_vec())
    }

    /// True if the server answers `/readyz`.
    pub async fn ready(&self) -> bool {
        self.http.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == StatusCode::OK)
    }
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
