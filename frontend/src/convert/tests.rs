use super::*;

#[test]
fn paths_ports_durations() {
    assert_eq!(join_path("/a/b", "../c/"), "/a/c/");
    assert_eq!(join_path("", "x"), "/x");
    assert_eq!(join_path("/w", "/abs"), "/abs");
    assert_eq!(
        parse_port_spec("8000-8002").unwrap(),
        ["8000/tcp", "8001/tcp", "8002/tcp"]
    );
    assert_eq!(parse_port_spec("53/udp").unwrap(), ["53/udp"]);
    assert_eq!(
        parse_port_spec("x").unwrap_err().to_string(),
        "invalid containerPort: x"
    );
    assert_eq!(
        parse_port_spec("80/icmp").unwrap_err().to_string(),
        "invalid proto: icmp"
    );
    assert_eq!(crate::edit_distance("form", "from"), 1);
}

#[test]
fn url_file_names() {
    assert_eq!(copy::url_filename("https://h/a/b.tgz?x=1"), "b.tgz");
    assert_eq!(copy::url_filename("https://h/"), "__unnamed__");
}
