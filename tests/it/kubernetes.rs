//! The Kubernetes manifests (`packaging/kubernetes`) hold together without a cluster: every file
//! kustomize is told about is a list of Kubernetes objects of the expected kinds, selectors pick
//! the pods they are meant for, the gateway's configuration in the ConfigMap passes the gateway's
//! own check with the environment the Deployment gives it, and every port the probes, the Service
//! and the scrape annotations name is a listener of that configuration. Nothing here talks to a
//! cluster: what a real one would refuse or do beyond this is not tested.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokengate::config::{AccessLogConfig, AuditConfig, Config, ConfigError, Env, LogOutput};
use yaml_rust2::{Yaml, YamlLoader};

/// Where the manifests are.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kubernetes");
/// The configuration's key in the ConfigMap, and its file name in the pod.
const CONFIG_KEY: &str = "tokengate.toml";
/// What the Deployment's `metadata.name` field reference gives a pod, as Kubernetes names them.
const POD_NAME: &str = "tokengate-6f7c9d8b5-q2x4z";

/// Every object of every file the kustomization lists, with the file it came from.
struct Manifests {
    objects: Vec<(String, Yaml)>,
}

impl Manifests {
    fn load() -> Manifests {
        let mut objects = Vec::new();
        for file in listed_files() {
            let docs = documents(&file);
            assert!(!docs.is_empty(), "{file}: no object");
            objects.extend(docs.into_iter().map(|doc| (file.clone(), doc)));
        }
        Manifests { objects }
    }

    fn get(&self, kind: &str, name: &str) -> &Yaml {
        let found = self.objects.iter().find(|(_, o)| {
            o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name)
        });
        &found.unwrap_or_else(|| panic!("no {kind} {name}")).1
    }

    /// The gateways' pod template.
    fn pod(&self) -> &Yaml {
        &self.get("Deployment", "tokengate")["spec"]["template"]
    }

    /// The Deployment's gateway container.
    fn gateway(&self) -> &Yaml {
        named(&self.pod()["spec"]["containers"], "tokengate")
    }

    fn config_text(&self) -> &str {
        text(&self.get("ConfigMap", "tokengate-config")["data"][CONFIG_KEY])
    }

    /// The gateway container's environment as a pod gets it: literal values, the example
    /// Secret's values, and the pod's name.
    fn pod_env(&self) -> Env {
        let mut env = Env::new();
        for var in list(&self.gateway()["env"]) {
            let from = &var["valueFrom"];
            let value = if let Some(value) = var["value"].as_str() {
                value
            } else if let Some(field) = from["fieldRef"]["fieldPath"].as_str() {
                assert_eq!(
                    field, "metadata.name",
                    "a field this test cannot stand in for"
                );
                POD_NAME
            } else {
                let key = &from["secretKeyRef"];
                let secret = self.get("Secret", text(&key["name"]));
                text(&secret["stringData"][text(&key["key"])])
            };
            env.insert(text(&var["name"]).to_owned(), value.to_owned());
        }
        env
    }

    /// The configuration read as a pod reads it: the file at its mount path, the pod's
    /// environment. A build without the etcd store refuses `backend = "etcd"`: there the store
    /// is switched to the journal by its variable, so the rest is still checked.
    fn gateway_config(&self) -> Config {
        let mut env = self.pod_env();
        if !cfg!(feature = "etcd") {
            env.insert("TOKENGATE_STORE__BACKEND".into(), "journal".into());
        }
        self.read_config(&env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The configuration read from where `TOKENGATE_CONFIG` says it is, with `env`.
    fn read_config(&self, env: &Env) -> Result<Config, ConfigError> {
        let base = Path::new(&env["TOKENGATE_CONFIG"]).parent();
        Config::read(
            CONFIG_KEY,
            self.config_text(),
            base,
            &Default::default(),
            env,
        )
    }
}

/// The file names the kustomization lists.
fn listed_files() -> Vec<String> {
    let kustomization = &documents("kustomization.yaml")[0];
    let files = list(&kustomization["resources"]).iter();
    files.map(|file| text(file).to_owned()).collect()
}

/// The YAML documents of one file, empty ones (a trailing `---`) left out.
fn documents(file: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(Path::new(DIR).join(file));
    let text = text.unwrap_or_else(|e| panic!("{file}: {e}"));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    docs.into_iter().filter(|doc| !doc.is_null()).collect()
}

fn text(yaml: &Yaml) -> &str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("not a string: {yaml:?}"))
}

fn number(yaml: &Yaml) -> u64 {
    let n = yaml
        .as_i64()
        .unwrap_or_else(|| panic!("not a number: {yaml:?}"));
    u64::try_from(n).unwrap()
}

/// A sequence's items; an absent key is an empty sequence.
fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map_or(&[], Vec::as_slice)
}

/// The item of a sequence whose `name` is `name`.
fn named<'a>(items: &'a Yaml, name: &str) -> &'a Yaml {
    let found = list(items)
        .iter()
        .find(|i| i["name"].as_str() == Some(name));
    found.unwrap_or_else(|| panic!("nothing named {name}"))
}

/// A map of strings (labels, selectors, annotations) as a Rust map.
fn string_map(yaml: &Yaml) -> BTreeMap<&str, &str> {
    let hash = yaml
        .as_hash()
        .unwrap_or_else(|| panic!("not a map: {yaml:?}"));
    hash.iter().map(|(k, v)| (text(k), text(v))).collect()
}

/// Whether a selector picks pods labelled `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let labels = string_map(labels);
    string_map(selector)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port a probe or a Service names, by name or number.
fn container_port(container: &Yaml, port: &Yaml) -> u16 {
    let port = match port {
        Yaml::String(name) => &named(&container["ports"], name)["containerPort"],
        other => other,
    };
    u16::try_from(number(port)).unwrap()
}

/// The mount path of the volume `volume` in `container`.
fn mount_path<'a>(container: &'a Yaml, volume: &str) -> &'a str {
    text(&named(&container["volumeMounts"], volume)["mountPath"])
}

#[test]
fn the_kustomization_lists_every_manifest_and_each_exists() {
    let kustomization = &documents("kustomization.yaml")[0];
    let api = kustomization["apiVersion"].as_str();
    assert_eq!(api, Some("kustomize.config.k8s.io/v1beta1"));
    assert_eq!(kustomization["kind"].as_str(), Some("Kustomization"));
    assert!(
        kustomization["namespace"].is_badvalue(),
        "applied to whichever namespace the operator chooses"
    );
    let listed: BTreeSet<String> = listed_files().into_iter().collect();
    assert_eq!(listed.len(), listed_files().len(), "a file is listed twice");
    let on_disk: BTreeSet<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
    for file in &listed {
        assert!(Path::new(DIR).join(file).is_file(), "{file} is missing");
    }
    // The image the gateway's containers name is the one the kustomization sets.
    let images: Vec<&str> = list(&kustomization["images"])
        .iter()
        .map(|i| text(&i["name"]))
        .collect();
    let manifests = Manifests::load();
    let pod = &manifests.pod()["spec"];
    for container in list(&pod["containers"])
        .iter()
        .chain(list(&pod["initContainers"]))
    {
        assert!(images.contains(&text(&container["image"])), "{container:?}");
    }
}

#[test]
fn every_manifest_is_a_kubernetes_object_of_an_expected_kind() {
    let manifests = Manifests::load();
    let mut found = Vec::new();
    for (file, object) in &manifests.objects {
        let (kind, name) = (text(&object["kind"]), text(&object["metadata"]["name"]));
        let api_version = text(&object["apiVersion"]);
        let at = format!("{file}: {kind} {name}");
        assert!(!api_version.is_empty(), "{at}: apiVersion");
        let dns_label = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        assert!(dns_label, "{at}: metadata.name must be a DNS label");
        let namespace = &object["metadata"]["namespace"];
        assert!(namespace.is_badvalue(), "{at}: no namespace is hard-coded");
        found.push([kind, api_version, name]);
    }
    found.sort_unstable();
    let expected = [
        ["ConfigMap", "v1", "tokengate-config"],
        ["Deployment", "apps/v1", "tokengate"],
        ["PodDisruptionBudget", "policy/v1", "tokengate"],
        ["PodDisruptionBudget", "policy/v1", "tokengate-etcd"],
        ["Secret", "v1", "tokengate"],
        ["Service", "v1", "tokengate"],
        ["Service", "v1", "tokengate-etcd"],
        ["StatefulSet", "apps/v1", "tokengate-etcd"],
    ];
    assert_eq!(found, expected);
}

/// Kubernetes refuses a label, annotation, ConfigMap or Secret value, or an environment value,
/// that is not a string: `port: 9901` unquoted is a number.
#[test]
fn labels_annotations_data_and_environment_values_are_strings() {
    const STRINGS_ONLY: [&str; 5] = ["labels", "annotations", "matchLabels", "data", "stringData"];
    fn walk(yaml: &Yaml, at: &str, problems: &mut Vec<String>) {
        let children: Vec<(String, &Yaml)> = match yaml {
            Yaml::Hash(hash) => hash
                .iter()
                .map(|(k, v)| (format!("{at}.{}", text(k)), v))
                .collect(),
            Yaml::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{at}[{i}]"), v))
                .collect(),
            _ => return,
        };
        let key = at.rsplit('.').next().unwrap_or("");
        if STRINGS_ONLY.contains(&key) {
            let not_strings = children.iter().filter(|(_, v)| v.as_str().is_none());
            problems.extend(not_strings.map(|(at, v)| format!("{at}: {v:?}")));
        }
        if key == "env" {
            let values = children.iter().map(|(at, var)| (at, &var["value"]));
            let not_strings = values.filter(|(_, v)| !v.is_badvalue() && v.as_str().is_none());
            problems.extend(not_strings.map(|(at, v)| format!("{at}.value: {v:?}")));
        }
        for (at, child) in children {
            walk(child, &at, problems);
        }
    }
    let mut problems = Vec::new();
    for (file, object) in Manifests::load().objects {
        walk(&object, &file, &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn selectors_pick_the_pods_they_are_meant_for() {
    let manifests = Manifests::load();
    let gateway = &manifests.get("Deployment", "tokengate")["spec"];
    let etcd = &manifests.get("StatefulSet", "tokengate-etcd")["spec"];
    let gateway_pods = &gateway["template"]["metadata"]["labels"];
    let etcd_pods = &etcd["template"]["metadata"]["labels"];
    let service = |name| &manifests.get("Service", name)["spec"]["selector"];
    let budget = |name| &manifests.get("PodDisruptionBudget", name)["spec"]["selector"];
    for (selector, pods, others) in [
        (&gateway["selector"]["matchLabels"], gateway_pods, etcd_pods),
        (service("tokengate"), gateway_pods, etcd_pods),
        (&budget("tokengate")["matchLabels"], gateway_pods, etcd_pods),
        (&etcd["selector"]["matchLabels"], etcd_pods, gateway_pods),
        (service("tokengate-etcd"), etcd_pods, gateway_pods),
        (
            &budget("tokengate-etcd")["matchLabels"],
            etcd_pods,
            gateway_pods,
        ),
    ] {
        assert!(selects(selector, pods), "{selector:?} misses its pods");
        assert!(
            !selects(selector, others),
            "{selector:?} picks the others too"
        );
    }
    let headless = &manifests.get("Service", "tokengate-etcd")["spec"];
    assert_eq!(headless["clusterIP"].as_str(), Some("None"));
    assert_eq!(etcd["serviceName"].as_str(), Some("tokengate-etcd"));
    assert_eq!(
        (number(&gateway["replicas"]), number(&etcd["replicas"])),
        (3, 3)
    );
    for name in ["tokengate", "tokengate-etcd"] {
        let budget = &manifests.get("PodDisruptionBudget", name)["spec"];
        assert_eq!(budget["maxUnavailable"].as_i64(), Some(1), "{name}");
    }
}

#[test]
fn the_configuration_passes_the_gateways_own_check_with_the_pods_environment() {
    let manifests = Manifests::load();
    let env = manifests.pod_env();
    let read = manifests.read_config(&env);
    if cfg!(feature = "etcd") {
        let config = read.unwrap_or_else(|e| panic!("{e}"));
        assert!(config.upstream.authorization.is_some(), "from the Secret");
        assert_eq!(config.server.node_name, POD_NAME);
    } else {
        // CI runs both builds: the default one must say why it refuses.
        let problems = read.unwrap_err().problems;
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("[store] backend"), "{problems:#?}");
        assert!(problems[0].contains("--features etcd"), "{problems:#?}");
    }
    assert!(tokengate::users::validate_password(&env["ELASTIC_PASSWORD"]).is_ok());
}

#[cfg(feature = "etcd")]
#[test]
fn the_store_is_the_etcd_statefulsets_members_by_their_stable_names() {
    let manifests = Manifests::load();
    let config = manifests.gateway_config();
    assert_eq!(config.store.backend, tokengate::config::StoreBackend::Etcd);
    let statefulset = manifests.get("StatefulSet", "tokengate-etcd");
    let name = text(&statefulset["metadata"]["name"]);
    let service = text(&statefulset["spec"]["serviceName"]);
    let etcd = named(
        &statefulset["spec"]["template"]["spec"]["containers"],
        "etcd",
    );
    let port = |name: &str| container_port(etcd, &Yaml::String(name.into()));
    let (client, peer) = (port("client"), port("peer"));
    let members: Vec<String> = (0..number(&statefulset["spec"]["replicas"]))
        .map(|i| format!("{name}-{i}.{service}"))
        .collect();
    let endpoints: Vec<String> = members
        .iter()
        .map(|m| format!("http://{m}:{client}"))
        .collect();
    assert_eq!(config.store.etcd.endpoints, endpoints);

    let args = list(&etcd["args"])
        .iter()
        .filter_map(|arg| arg.as_str()?.split_once('='));
    let args: BTreeMap<&str, &str> = args.collect();
    let cluster: Vec<String> = members
        .iter()
        .map(|member| {
            format!(
                "{}=http://{member}:{peer}",
                member.split('.').next().unwrap()
            )
        })
        .collect();
    let own = format!("$(POD_NAME).{service}");
    for (flag, value) in [
        ("--initial-cluster", cluster.join(",")),
        ("--name", "$(POD_NAME)".to_owned()),
        (
            "--initial-advertise-peer-urls",
            format!("http://{own}:{peer}"),
        ),
        ("--advertise-client-urls", format!("http://{own}:{client}")),
        ("--listen-client-urls", format!("http://0.0.0.0:{client}")),
        ("--listen-peer-urls", format!("http://0.0.0.0:{peer}")),
    ] {
        assert_eq!(args[flag], value, "{flag}");
    }
    let data = mount_path(etcd, "data");
    assert!(
        args["--data-dir"].starts_with(&format!("{data}/")),
        "inside the volume"
    );
    let headless = &manifests.get("Service", service)["spec"];
    for (name, number) in [("client", client), ("peer", peer)] {
        let target = &named(&headless["ports"], name)["targetPort"];
        assert_eq!(container_port(etcd, target), number, "{name}");
    }
}

#[test]
fn probes_service_and_scrape_annotations_name_the_configurations_listeners() {
    let manifests = Manifests::load();
    let config = manifests.gateway_config();
    let listen = config.server.listen.expect("a plain-HTTP listener");
    let admin = config.admin.listen.expect("an admin listener");
    // Probes come from the node, the Service's traffic from other pods: not loopback.
    assert!(listen.ip().is_unspecified(), "{listen}");
    assert!(admin.ip().is_unspecified(), "{admin}");
    // Off loopback the status page asks who is looking; the probes never do, and Prometheus
    // scrapes by the annotations without credentials.
    assert!(config.admin.requires_auth());
    assert!(!config.admin.metrics_require_auth);

    let gateway = manifests.gateway();
    let ports = list(&gateway["ports"]).iter();
    let ports: BTreeSet<u16> = ports
        .map(|p| container_port(gateway, &p["containerPort"]))
        .collect();
    let listeners = BTreeSet::from([listen.port(), admin.port()]);
    assert_eq!(
        ports, listeners,
        "every container port is a listener and back"
    );
    for (probe, path) in [
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &gateway[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(
            container_port(gateway, &get["port"]),
            admin.port(),
            "{probe}"
        );
    }

    let service = list(&manifests.get("Service", "tokengate")["spec"]["ports"]);
    assert_eq!(service.len(), 1, "the admin port stays out of the Service");
    assert_eq!(number(&service[0]["port"]), 9200, "Elasticsearch's port");
    assert_eq!(
        container_port(gateway, &service[0]["targetPort"]),
        listen.port()
    );

    let annotations = string_map(&manifests.pod()["metadata"]["annotations"]);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], admin.port().to_string());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn the_files_the_configuration_names_are_where_the_pod_mounts_them() {
    let manifests = Manifests::load();
    let config = manifests.gateway_config();
    let gateway = manifests.gateway();
    let pod = &manifests.pod()["spec"];
    let volume = |name: &str| named(&pod["volumes"], name);

    // The configuration file: the ConfigMap's key under its volume's mount.
    let config_file = format!("{}/{CONFIG_KEY}", mount_path(gateway, "config"));
    assert_eq!(manifests.pod_env()["TOKENGATE_CONFIG"], config_file);
    let config_map = volume("config")["configMap"]["name"].as_str();
    assert_eq!(config_map, Some("tokengate-config"));

    // The data directory: an emptyDir, the one place the gateway writes (root is read-only).
    assert_eq!(
        config.server.data_dir,
        Path::new(mount_path(gateway, "data"))
    );
    assert!(volume("data")["emptyDir"].is_hash());
    let read_only = gateway["securityContext"]["readOnlyRootFilesystem"].as_bool();
    assert_eq!(read_only, Some(true));
    assert_eq!(
        config.audit.output,
        Some(LogOutput::Stdout),
        "outlives the pod"
    );

    // The cluster's CA: a key of a Secret volume, at the path the configuration names.
    let ca = config.upstream.tls.ca.as_deref().expect("upstream.ca");
    let item = &list(&volume("elasticsearch-ca")["secret"]["items"])[0];
    let mounted = Path::new(mount_path(gateway, "elasticsearch-ca")).join(text(&item["path"]));
    assert_eq!(ca, mounted);

    // The init container copies the realm's files into the same data directory.
    let init = named(&pod["initContainers"], "realm-files");
    assert_eq!(mount_path(init, "data"), mount_path(gateway, "data"));
    assert_eq!(volume("realm")["secret"]["optional"].as_bool(), Some(true));
}

#[test]
fn the_drain_fits_in_the_termination_grace_period() {
    let manifests = Manifests::load();
    let config = manifests.gateway_config();
    let grace = number(&manifests.pod()["spec"]["terminationGracePeriodSeconds"]);
    let pre_stop = list(&manifests.gateway()["lifecycle"]["preStop"]["exec"]["command"]);
    assert_eq!(pre_stop[0].as_str(), Some("sleep"));
    let pause = Duration::from_secs(text(&pre_stop[1]).parse().unwrap());
    // After SIGTERM: the drain, then the audit and access logs' last lines.
    let logs = AuditConfig::CLOSE_DEADLINE + AccessLogConfig::CLOSE_DEADLINE;
    let needed = pause + config.server.shutdown_grace + logs;
    assert!(
        needed <= Duration::from_secs(grace),
        "{needed:?} > {grace} s"
    );
}

/// The real binary's `check-config` (the files it names read, the upstream's TLS set up) on
/// the ConfigMap's text, with the pod's environment and nothing else. Two things differ from
/// the pod: the cluster's CA is a fresh one here (TOKENGATE_UPSTREAM__CA) and the data
/// directory a temporary one (--data-dir).
#[test]
fn the_binary_checks_the_configuration_as_a_pod_runs_it() {
    let manifests = Manifests::load();
    let check = |extra: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let (file, ca) = (dir.path().join(CONFIG_KEY), dir.path().join("ca.crt"));
        std::fs::write(&file, manifests.config_text()).unwrap();
        std::fs::write(&ca, test_ca()).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .env_clear()
            .envs(manifests.pod_env())
            .env("TOKENGATE_UPSTREAM__CA", &ca)
            .envs(extra.iter().copied())
            .arg("check-config")
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let (code, stderr) = check(&[]);
    if cfg!(feature = "etcd") {
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("is valid"), "{stderr}");
    } else {
        // Refused for the store alone, naming the feature; with the journal, valid.
        assert_eq!(code, Some(64), "{stderr}");
        assert!(stderr.contains("(1 problem(s))"), "{stderr}");
        assert!(stderr.contains("--features etcd"), "{stderr}");
        let (code, stderr) = check(&[("TOKENGATE_STORE__BACKEND", "journal")]);
        assert_eq!(code, Some(0), "{stderr}");
    }
}

/// A self-signed CA certificate, PEM.
fn test_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}
