//! The route table of one gateway: every pattern its router serves and every configured
//! pass-through route, matched once per request on the normalised path. The pass-through route
//! type is built here once and shared by both transports.

use std::{sync::Arc, time::Duration};

use http::Method;

use crate::{
    access::{Access, AccessTable, Lookup},
    config::{ConfigError, GatewayConfig, RESERVED_PATHS},
    error::EdgeError,
    ratelimit::RouteLimit,
    upstream::{HttpUpstream, Upstreams},
};

/// A declarative pass-through route, as both transports serve it.
#[derive(Debug)]
pub struct PassRoute {
    /// Its position in the config, `routes[index]`.
    pub(crate) index: usize,
    /// The path prefix it owns, without a trailing slash (`""` for `/`).
    pub(crate) prefix: String,
    pub(crate) rewrite: Option<String>,
    /// `None`: the route declared no access and admits nobody.
    pub(crate) access: Option<Access>,
    pub(crate) upstream: HttpUpstream,
    pub(crate) timeout: Duration,
    pub(crate) forward_authorization: bool,
}

impl PassRoute {
    /// The router patterns of the route: the prefix itself and everything below it.
    pub(crate) fn patterns(&self) -> [String; 2] {
        let exact = if self.prefix.is_empty() { "/".to_owned() } else { self.prefix.clone() };
        [exact, format!("{}/{{*rest}}", self.prefix)]
    }

    /// Appends the upstream path and query for a (normalised) `path` and `query` to `out`:
    /// the prefix replaced by `rewrite`, or the path unchanged without one.
    pub(crate) fn push_upstream_path(&self, out: &mut Vec<u8>, path: &str, query: Option<&str>) {
        let start = out.len();
        match &self.rewrite {
            None => out.extend_from_slice(path.as_bytes()),
            Some(rewrite) => {
                let rest = path.strip_prefix(self.prefix.as_str()).unwrap_or(path);
                out.extend_from_slice(rewrite.as_bytes());
                match (rewrite.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => out.extend_from_slice(&rest.as_bytes()[1..]),
                    (false, false) if !rest.is_empty() => {
                        out.push(b'/');
                        out.extend_from_slice(rest.as_bytes());
                    }
                    _ => out.extend_from_slice(rest.as_bytes()),
                }
            }
        }
        if out.len() == start {
            out.push(b'/');
        }
        if let Some(query) = query {
            out.push(b'?');
            out.extend_from_slice(query.as_bytes());
        }
    }
}

/// The route a request matched.
#[derive(Debug)]
pub enum Route<'p> {
    /// A pass-through route.
    Pass(&'p Arc<PassRoute>),
    /// One of the router's routes, with its rule for the request's method (`None`: it declared
    /// none, and admits nobody).
    Router(Option<&'p Access>),
    /// One of the router's routes, which has no handler for this method: the router answers
    /// 405 with `Allow`.
    OtherMethod,
}

#[derive(Debug)]
enum Entry {
    Pass(usize),
    Router(String),
}

/// Every route of one gateway.
#[derive(Debug)]
pub(crate) struct RouteTable {
    paths: matchit::Router<Entry>,
    pass: Vec<Arc<PassRoute>>,
    table: AccessTable,
}

impl RouteTable {
    pub(crate) fn new(
        config: &GatewayConfig,
        mut table: AccessTable,
        upstreams: &Upstreams,
        store: Option<&Arc<crate::ratelimit::RedisStore>>,
        has_redis: bool,
        gateway: &'static str,
    ) -> Result<Self, ConfigError> {
        // Each named route gets its policy; a policy naming no route is a typo.
        let limits: std::collections::HashMap<&str, Arc<RouteLimit>> = config
            .routes_policy
            .iter()
            .filter_map(|(name, policy)| {
                let limit = policy.rate_limit.as_ref()?;
                Some((name.as_str(), Arc::new(RouteLimit::new(name, limit, store))))
            })
            .collect();
        let mut named: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut failed = None;
        let mut attach = |access: &mut Access| {
            let name = access.name().map(str::to_owned);
            if let Some(name) = &name {
                named.insert(name.clone());
                if let Some(limit) = limits.get(name.as_str()) {
                    access.set_limit(limit.clone());
                }
            }
            // The config's cache policy of a named route, else the one its code gives.
            let configured = name
                .as_ref()
                .and_then(|name| config.routes_policy.get(name))
                .and_then(|policy| policy.cache.as_ref());
            let Some(cache) = configured.or(access.cache_config()).cloned() else { return };
            let name = name.unwrap_or_else(|| "unnamed".to_owned());
            let key = format!("routes_policy.{name}.cache");
            let policy =
                crate::cache::RoutePolicy::new(gateway, &name, &cache, &key).and_then(|policy| {
                    if policy.uses_redis() && !has_redis {
                        return Err(ConfigError::Invalid {
                            key: format!("{key}.store"),
                            message: "`redis` needs a [redis] section".into(),
                        });
                    }
                    Ok(policy)
                });
            match policy {
                Ok(policy) => access.set_cache(Arc::new(policy)),
                Err(error) => failed = failed.take().or(Some(error)),
            }
        };
        table.rules_mut().for_each(&mut attach);
        let mut paths = matchit::Router::new();
        let mut patterns: Vec<String> = table.patterns().map(str::to_owned).collect();
        patterns.sort();
        for pattern in &patterns {
            insert(&mut paths, pattern, Entry::Router(pattern.clone()), || pattern.clone())?;
        }
        let mut pass = Vec::with_capacity(config.routes.len());
        for (index, route) in config.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            let upstream = upstreams.http(&route.upstream).map_err(|_| ConfigError::Invalid {
                key: format!("{key}.upstream"),
                message: format!("no http upstream named `{}`", route.upstream),
            })?;
            let prefix = route.path.trim_end_matches('/').to_owned();
            // A gateway route under the prefix would be shadowed by one or the other,
            // depending on the pattern: the config must say which (reserved paths excepted:
            // they are always the gateway's own).
            let below = format!("{prefix}/");
            if let Some(own) = patterns.iter().find(|p| {
                (p.as_str() == prefix || p.starts_with(&below))
                    && !RESERVED_PATHS.contains(&p.as_str())
            }) {
                return Err(ConfigError::Invalid {
                    key: format!("{key}.path"),
                    message: format!("`{}` overlaps the gateway's route `{own}`", route.path),
                });
            }
            if route.access.is_none() {
                tracing::warn!(path = %route.path, "route declares no access: it refuses every request");
            }
            let mut access =
                route.access.as_deref().and_then(|a| Access::from_config(a, &route.scopes)).map(
                    |a| match &route.name {
                        Some(name) => a.named(name),
                        None => a,
                    },
                );
            if let Some(access) = &mut access {
                attach(access);
            }
            let route = Arc::new(PassRoute {
                index,
                timeout: route.timeout.unwrap_or_else(|| upstream.timeout()),
                access,
                rewrite: route.rewrite.clone(),
                upstream: upstream.clone(),
                forward_authorization: route.forward_authorization,
                prefix,
            });
            for pattern in route.patterns() {
                insert(&mut paths, &pattern, Entry::Pass(index), || format!("{key}.path"))?;
            }
            pass.push(route);
        }
        if let Some(error) = failed {
            return Err(error);
        }
        if let Some(name) = config.routes_policy.keys().find(|name| !named.contains(*name)) {
            return Err(ConfigError::Invalid {
                key: format!("routes_policy.{name}"),
                message: "no route has this name".into(),
            });
        }
        Ok(Self { paths, pass, table })
    }

    pub(crate) fn pass_routes(&self) -> &[Arc<PassRoute>] {
        &self.pass
    }

    /// Every declared rule, pass-through routes included.
    pub(crate) fn rules(&self) -> impl Iterator<Item = (&str, &Access)> {
        let pass =
            self.pass.iter().filter_map(|r| r.access.as_ref().map(|a| (r.prefix.as_str(), a)));
        self.table.rules().chain(pass)
    }

    /// The route of a normalised `path`.
    pub(crate) fn route(&self, path: &str, method: &Method) -> Result<Route<'_>, EdgeError> {
        let matched = self.paths.at(path).map_err(|_| EdgeError::no_route())?;
        Ok(match matched.value {
            Entry::Pass(index) => Route::Pass(&self.pass[*index]),
            Entry::Router(pattern) => match self.table.lookup_pattern(pattern, method) {
                Lookup::Declared(rule) => Route::Router(Some(rule)),
                Lookup::OtherMethod => Route::OtherMethod,
                Lookup::Undeclared | Lookup::NoRoute => Route::Router(None),
            },
        })
    }
}

/// Adds `pattern` to the table; a conflict is a config error naming both routes.
fn insert(
    paths: &mut matchit::Router<Entry>,
    pattern: &str,
    entry: Entry,
    name: impl Fn() -> String,
) -> Result<(), ConfigError> {
    paths.insert(pattern, entry).map_err(|error| {
        let with = match &error {
            matchit::InsertError::Conflict { with } => format!("`{with}`"),
            other => other.to_string(),
        };
        ConfigError::Invalid {
            key: name(),
            message: format!("the route `{pattern}` overlaps {with}"),
        }
    })
}
