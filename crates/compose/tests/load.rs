//! Loading projects from files: discovery, the environment, interpolation, merging, profiles,
//! warnings and errors with positions, and the planner's names and order.

use kiln_compose::{load, plan, ComposeError, LoadOptions, Loaded};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn opts(cwd: &Path) -> LoadOptions {
    LoadOptions {
        cwd: cwd.to_path_buf(),
        environ: BTreeMap::from([("HOME".to_string(), "/home/u".to_string())]),
        ..LoadOptions::default()
    }
}

fn load_text(text: &str) -> Result<Loaded, ComposeError> {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    write(&app, "compose.yaml", text);
    load(&opts(&app))
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn every_awesome_compose_file_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/compose/awesome-compose")
        .canonicalize()
        .unwrap();
    let mut count = 0;
    let mut all_warnings = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let file = ["compose.yaml", "compose.yml"]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no compose file in {}", dir.display()));
        let mut o = opts(&dir);
        // Variables the files leave to their users.
        o.environ
            .insert("PLEX_MEDIA_PATH".into(), "/srv/media".into());
        let loaded = load(&o).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!loaded.project.services.is_empty(), "{}", file.display());
        let name = dir.file_name().unwrap().to_str().unwrap().to_lowercase();
        assert_eq!(loaded.project.name, name);
        // Every one plans (names, order) and prints.
        plan(&loaded, &[]).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(kiln_compose::config_yaml(&loaded.project).starts_with("name: "));
        for w in &loaded.warnings {
            if !w.message.contains("variable is not set") {
                all_warnings.push(w.to_string());
            }
        }
        count += 1;
    }
    assert_eq!(count, 39, "compose files of docker/awesome-compose");
    // What they use that kiln does not model: wasmedge's `runtime:`; and `version:`.
    for w in &all_warnings {
        assert!(
            w.contains(".runtime: unknown key, ignored")
                || w.contains("compose.yaml:1: the attribute `version` is obsolete"),
            "{all_warnings:#?}"
        );
    }
    assert_eq!(all_warnings.len(), 4, "{all_warnings:#?}");
}

#[test]
fn discovery_walks_up_and_names_the_project_after_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("My_App.v2");
    write(
        &proj,
        "docker-compose.yml",
        "services:\n  web:\n    image: nginx\n",
    );
    write(
        &proj,
        "compose.override.yaml",
        "services:\n  web:\n    hostname: h\n",
    );
    let deep = proj.join("src/deep");
    std::fs::create_dir_all(&deep).unwrap();
    let l = load(&opts(&deep)).unwrap();
    assert_eq!(l.project.name, "my_appv2");
    assert_eq!(l.config_files.len(), 2, "the override file is merged");
    assert_eq!(l.project.services["web"].hostname.as_deref(), Some("h"));
    assert_eq!(l.working_dir, proj);

    // Two default names: the first wins, with a warning.
    std::fs::remove_file(proj.join("compose.override.yaml")).unwrap();
    write(&proj, "compose.yaml", "services:\n  api:\n    image: x\n");
    let l = load(&opts(&proj)).unwrap();
    assert!(l.project.services.contains_key("api"));
    assert!(
        warnings(&l)[0].starts_with("Found multiple config files"),
        "{:?}",
        warnings(&l)
    );

    let empty = tempfile::tempdir().unwrap();
    let e = load(&opts(empty.path())).unwrap_err();
    assert_eq!(e.to_string(), "no configuration file provided: not found");
}

#[test]
fn project_name_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    write(
        &app,
        "compose.yaml",
        "name: fromfile\nservices:\n  a:\n    image: x\n",
    );
    let mut o = opts(&app);
    assert_eq!(load(&o).unwrap().project.name, "fromfile");
    o.environ
        .insert("COMPOSE_PROJECT_NAME".into(), "fromenv".into());
    assert_eq!(load(&o).unwrap().project.name, "fromenv");
    o.project_name = Some("fromflag".into());
    assert_eq!(load(&o).unwrap().project.name, "fromflag");
    o.project_name = Some("Bad Name".into());
    assert_eq!(
        load(&o).unwrap_err().to_string(),
        "invalid project name \"Bad Name\": must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
    );
}

#[test]
fn compose_file_variable_and_relative_f() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yml", "services:\n  a:\n    image: one\n");
    write(
        dir.path(),
        "more.yml",
        "services:\n  a:\n    image: two\n  b:\n    image: b\n",
    );
    let mut o = opts(dir.path());
    o.environ
        .insert("COMPOSE_FILE".into(), "base.yml:more.yml".into());
    let l = load(&o).unwrap();
    assert_eq!(l.project.services["a"].image.as_deref(), Some("two"));
    assert_eq!(l.project.services.len(), 2);
    o.files = vec![PathBuf::from("base.yml")];
    let l = load(&o).unwrap();
    assert_eq!(l.project.services.len(), 1, "-f wins over COMPOSE_FILE");
}

#[test]
fn interpolation_from_dotenv_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    write(
        &app,
        "compose.yaml",
        "services:\n  web:\n    image: \"${IMAGE:-busybox}:${TAG}\"\n    command: echo $$HOME ${GREETING}\n    ports:\n      - \"${PORT}:80\"\n    environment:\n      FROM_SHELL:\n      LITERAL: $${NOT}\n",
    );
    write(&app, ".env", "TAG=1.36\nPORT=8080\nGREETING=from-dotenv\n");
    let mut o = opts(&app);
    o.environ.insert("GREETING".into(), "from-shell".into());
    o.environ.insert("FROM_SHELL".into(), "yes".into());
    let l = load(&o).unwrap();
    let web = &l.project.services["web"];
    assert_eq!(web.image.as_deref(), Some("busybox:1.36"));
    assert_eq!(
        web.command.as_deref().unwrap(),
        ["echo", "$HOME", "from-shell"],
        "the shell's variables win over .env"
    );
    assert_eq!(web.ports[0].published.as_deref(), Some("8080"));
    assert_eq!(web.environment["FROM_SHELL"].as_deref(), Some("yes"));
    assert_eq!(web.environment["LITERAL"].as_deref(), Some("${NOT}"));

    // --env-file replaces .env; a missing one is an error.
    write(&app, "other.env", "TAG=2\nPORT=9\n");
    o.env_files = vec![app.join("other.env")];
    let l = load(&o).unwrap();
    assert_eq!(
        l.project.services["web"].image.as_deref(),
        Some("busybox:2")
    );
    o.env_files = vec![app.join("missing.env")];
    assert!(load(&o).unwrap_err().to_string().starts_with("env file "));
}

#[test]
fn interpolation_errors_name_file_line_and_key() {
    let e = load_text("services:\n  web:\n    image: busybox\n    user: ${WHO:?set WHO first}\n")
        .unwrap_err();
    let s = e.to_string();
    assert!(
        s.ends_with("compose.yaml:4: required variable WHO is missing a value: set WHO first"),
        "{s}"
    );
    let e = load_text("services:\n  web:\n    image: \"busybox:${TAG\"\n").unwrap_err();
    let s = e.to_string();
    assert!(
        s.ends_with("compose.yaml:3: invalid interpolation format for services.web.image: \"busybox:${TAG\"; you may need to escape any $ with another $"),
        "{s}"
    );
    let l = load_text("services:\n  web:\n    image: busybox:${TAG}\n").unwrap();
    assert_eq!(
        warnings(&l),
        ["The \"TAG\" variable is not set. Defaulting to a blank string."]
    );
}

#[test]
fn dotenv_sets_compose_variables_and_env_files_fill_environment() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    write(
        &app,
        "compose.yaml",
        "services:\n  web:\n    image: w\n    env_file: [common.env, {path: missing.env, required: false}]\n    environment:\n      B: from-environment\n  tools:\n    image: t\n    profiles: [ops]\n",
    );
    write(
        &app,
        ".env",
        "COMPOSE_PROJECT_NAME=fromdotenv\nCOMPOSE_PROFILES=ops\n",
    );
    write(&app, "common.env", "A=from-file\nB=from-file\n");
    let l = load(&opts(&app)).unwrap();
    assert_eq!(l.project.name, "fromdotenv");
    assert!(l.project.services.contains_key("tools"));
    let web = &l.project.services["web"];
    assert_eq!(web.environment["A"].as_deref(), Some("from-file"));
    assert_eq!(web.environment["B"].as_deref(), Some("from-environment"));
    assert_eq!(
        web.env_file[0].path,
        app.join("common.env").display().to_string()
    );

    write(
        &app,
        "compose.yaml",
        "services:\n  web:\n    image: w\n    env_file: gone.env\n",
    );
    let e = load(&opts(&app)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("env file {} not found", app.join("gone.env").display())
    );
    assert_eq!(e.exit_code(), 14);
}

#[test]
fn merge_of_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "compose.yaml",
        "services:\n  web:\n    image: web:1\n    command: [serve, --port, '80']\n    environment: [A=1, B=2]\n    ports: ['8080:80']\n    volumes: ['data:/data']\n    depends_on: [db]\n  db:\n    image: db\nvolumes:\n  data:\n  other:\n",
    );
    let b = write(
        dir.path(),
        "prod.yaml",
        "services:\n  web:\n    image: web:2\n    command: serve --prod\n    environment:\n      B: '3'\n    ports: ['443:443']\n    volumes: ['other:/data']\n    depends_on:\n      db:\n        condition: service_healthy\n",
    );
    let mut o = opts(dir.path());
    o.files = vec![a, b];
    let l = load(&o).unwrap();
    let web = &l.project.services["web"];
    assert_eq!(web.image.as_deref(), Some("web:2"));
    assert_eq!(web.command.as_deref().unwrap(), ["serve", "--prod"]);
    assert_eq!(web.environment["A"].as_deref(), Some("1"));
    assert_eq!(web.environment["B"].as_deref(), Some("3"));
    let published: Vec<_> = web.ports.iter().map(|p| p.target).collect();
    assert_eq!(published, [80, 443]);
    assert_eq!(web.volumes.len(), 1);
    assert_eq!(web.volumes[0].source.as_deref(), Some("other"));
    assert_eq!(web.depends_on["db"].condition, "service_healthy");
}

#[test]
fn profiles_enable_services() {
    let text = "services:\n  web:\n    image: w\n  debug:\n    image: d\n    profiles: [debug]\n  tools:\n    image: t\n    profiles: [ops, debug]\n";
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "compose.yaml", text);
    let mut o = opts(dir.path());
    let names = |o: &LoadOptions| {
        load(o)
            .unwrap()
            .project
            .services
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&o), ["web"]);
    o.profiles = vec!["ops".into()];
    assert_eq!(names(&o), ["tools", "web"]);
    o.profiles = vec![];
    o.environ.insert("COMPOSE_PROFILES".into(), "debug".into());
    assert_eq!(names(&o), ["debug", "tools", "web"]);
    o.environ.remove("COMPOSE_PROFILES");
    o.services = vec!["debug".into()];
    assert_eq!(
        names(&o),
        ["debug", "web"],
        "a service named on the command line is enabled"
    );

    let e = load_text("services:\n  web:\n    image: w\n    depends_on: [db]\n  db:\n    image: d\n    profiles: [db]\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"db\" is required by \"web\" but is disabled. Can be enabled by profiles [\"db\"]"
    );
}

#[test]
fn unknown_keys_warn_with_their_line_and_extensions_are_silent() {
    let l = load_text(
        "x-common: &c\n  restart: always\nservices:\n  web:\n    <<: *c\n    image: w\n    x-note: fine\n    colour: blue\n    healthcheck:\n      test: true\n      intervall: 5s\n",
    );
    let e = l.unwrap_err();
    // `test: true` is a wrong type: an error, with file, line and key path.
    let s = e.to_string();
    assert!(s.ends_with("compose.yaml:10: services.web.healthcheck.test: expected a string or a list, found a boolean"), "{s}");

    let l = load_text(
        "x-common: &c\n  restart: always\nservices:\n  web:\n    <<: *c\n    image: w\n    x-note: fine\n    colour: blue\n    healthcheck:\n      test: [CMD, 'true']\n      intervall: 5s\n    depends_on:\n      db:\n        condition: service_started\n        wait: yes\n  db:\n    image: d\n",
    )
    .unwrap();
    let w = warnings(&l);
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[2].ends_with("compose.yaml:15: services.web.depends_on.db.wait: unknown key, ignored"),
        "{w:?}"
    );
    assert!(
        w[0].ends_with("compose.yaml:8: services.web.colour: unknown key, ignored"),
        "{w:?}"
    );
    assert!(
        w[1].ends_with("compose.yaml:11: services.web.healthcheck.intervall: unknown key, ignored"),
        "{w:?}"
    );
    assert_eq!(l.project.services["web"].restart.as_deref(), Some("always"));
}

#[test]
fn type_errors_name_file_line_and_key_path() {
    let cases = [
        ("services:\n  web:\n    image: w\n    ports:\n      - 80\n      - '80/http'\n", "compose.yaml:6: services.web.ports[1]: invalid port \"80/http\": the protocol must be tcp, udp or sctp"),
        ("services:\n  web:\n    image: w\n    environment: 3\n", "compose.yaml:4: services.web.environment: expected a mapping or a list, found a number"),
        ("services:\n  web:\n    image: w\n    deploy:\n      replicas: many\n", "compose.yaml:5: services.web.deploy.replicas: expected a non-negative integer, found \"many\""),
        ("services:\n  web:\n    image: w\n    depends_on:\n      db:\n        condition: started\n  db:\n    image: d\n", "compose.yaml:6: services.web.depends_on.db.condition: \"started\" is not one of service_started, service_healthy, service_completed_successfully"),
        ("services:\n  web:\n    image: w\n    volumes:\n      - type: volume\n        target: /x\n        sourc: y\n", "compose.yaml:5: services.web.volumes[0]: unknown field `sourc`"),
        ("services: [a]\n", "compose.yaml:1: services: invalid type: sequence, expected a map"),
        ("services:\n  ok:\n    image: w\n  ../x:\n    image: w\n", "compose.yaml:4: services.../x: invalid name: only letters, digits, `.`, `_` and `-` are allowed"),
    ];
    for (text, want) in cases {
        let e = load_text(text).unwrap_err().to_string();
        assert!(e.contains(want), "got   {e}\nwanted {want}");
    }
}

#[test]
fn references_and_images_are_checked() {
    let e = load_text("services:\n  web:\n    image: w\n    volumes: ['data:/d']\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"web\" refers to undefined volume data: invalid compose project"
    );
    let e = load_text("services:\n  web:\n    image: w\n    networks: [back]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"web\" refers to undefined network back: invalid compose project"
    );
    let e = load_text("services:\n  web:\n    restart: always\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("neither an image nor a build context"),
        "{e}"
    );
    let e = load_text(
        "services:\n  web:\n    image: w\n    scale: 2\n    deploy:\n      replicas: 3\n",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "services.web: can't set distinct values on 'scale' and 'deploy.replicas': invalid compose project");
    let e =
        load_text("services:\n  web:\n    image: w\n    container_name: ../escape\n").unwrap_err();
    assert_eq!(e.to_string(), "services.web.container_name: invalid container name \"../escape\", only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed");
    let e = load_text("services:\n  web:\n    image: w\n    container_name: one\n    scale: 2\n")
        .unwrap_err();
    assert!(
        e.to_string().contains("can't set container_name and web"),
        "{e}"
    );
    let e = load_text("services:\n  web:\n    image: w\n    depends_on: [db]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"web\" depends on undefined service \"db\": invalid compose project"
    );
}

#[test]
fn planner_names_labels_order_and_hash() {
    let text = "services:\n  api:\n    build: ./api\n    depends_on:\n      db:\n        condition: service_healthy\n    ports: ['127.0.0.1:8080:80']\n  db:\n    image: busybox\n    volumes: ['data:/var/lib/db']\n    scale: 2\n  web:\n    image: nginx\n    depends_on: [api]\n    networks: [front, default]\nvolumes:\n  data:\nnetworks:\n  front:\n";
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("shop");
    write(&app, "compose.yaml", text);
    let l = load(&opts(&app)).unwrap();
    let p = plan(&l, &[]).unwrap();
    assert_eq!(p.project, "shop");
    let order: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["db", "api", "web"]);
    let nets: Vec<_> = p.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["shop_default", "shop_front"]);
    assert_eq!(p.volumes[0].name, "shop_data");
    assert_eq!(p.volumes[0].labels["com.docker.compose.volume"], "data");
    let db = &p.services[0];
    let names: Vec<_> = db.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["shop-db-1", "shop-db-2"]);
    let labels = &db.containers[1].labels;
    assert_eq!(labels["com.docker.compose.project"], "shop");
    assert_eq!(labels["com.docker.compose.service"], "db");
    assert_eq!(labels["com.docker.compose.container-number"], "2");
    assert_eq!(labels["com.docker.compose.config-hash"], db.config_hash);
    assert_eq!(p.builds.len(), 1);
    assert_eq!(p.builds[0].tag, "shop-api");
    assert_eq!(p.builds[0].context, app.join("api").display().to_string());
    assert_eq!(p.services[1].image, "shop-api");
    assert_eq!(
        p.services[1].containers[0].labels["com.docker.compose.depends_on"],
        "db:service_healthy:false"
    );
    // Only what `web` needs, still in order.
    let only: Vec<_> = plan(&l, &["api".into()])
        .unwrap()
        .services
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(only, ["db", "api"]);

    // The hash ignores scale, follows everything a container is made from.
    let hash = |text: &str| {
        let l = load_text(text).unwrap();
        kiln_compose::plan::config_hash(&l.project.services["a"])
    };
    let base = hash("services:\n  a:\n    image: x\n");
    assert_eq!(base, hash("services:\n  a:\n    image: x\n    scale: 3\n"));
    assert_ne!(
        base,
        hash("services:\n  a:\n    image: x\n    environment: [A=1]\n")
    );
    assert_eq!(base.len(), 64);
}

#[test]
fn normalisation_infers_what_compose_infers() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "compose.yaml",
        "services:\n  vpn:\n    image: v\n  app:\n    build:\n      context: .\n      args: [TOKEN, UNSET]\n    network_mode: service:vpn\n    pull_policy: if_not_present\n",
    );
    let mut o = opts(dir.path());
    o.environ.insert("TOKEN".into(), "t0k".into());
    let l = load(&o).unwrap();
    let app = &l.project.services["app"];
    let b = app.build.as_ref().unwrap();
    assert_eq!(b.dockerfile.as_deref(), Some("Dockerfile"));
    assert_eq!(b.args["TOKEN"].as_deref(), Some("t0k"));
    assert_eq!(b.args["UNSET"], None);
    assert_eq!(app.pull_policy.as_deref(), Some("missing"));
    assert!(app.depends_on["vpn"].restart);
    assert!(app.networks.is_empty(), "network_mode: no default network");
    let order: Vec<_> = plan(&l, &[])
        .unwrap()
        .services
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(order, ["vpn", "app"]);
    let e =
        load_text("services:\n  app:\n    image: a\n    network_mode: service:gone\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"app\" depends on undefined service \"gone\": invalid compose project"
    );
}

#[test]
fn hostile_counts_are_refused() {
    let l = load_text("services:\n  a:\n    image: x\n    scale: 4294967295\n").unwrap();
    let e = plan(&l, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "service \"a\" asks for 4294967295 containers, more than kiln runs for one service (1000)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.environ.insert("COMPOSE_FILE".into(), ":".into());
    assert!(matches!(load(&o), Err(ComposeError::NoConfigFile)));
}

#[test]
fn dependency_cycles_are_errors() {
    let l = load_text("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [c]\n  c:\n    image: x\n    depends_on: [a]\n").unwrap();
    let e = plan(&l, &[]).unwrap_err();
    assert_eq!(e.to_string(), "dependency cycle detected: a -> b -> c -> a");
}
