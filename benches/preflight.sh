# Sourced by the benchmark scripts: checks made before anything is built or measured, and the
# build of an earlier revision to measure beside this tree.

# need <command> <debian package>: stop unless the command is installed.
need() {
    command -v "$1" >/dev/null || { echo "$1 is needed: apt-get install $2" >&2; exit 1; }
}

# free_ports <names of the variables that hold them>: stop if something already listens on one
# of these loopback ports (a server of ours could not bind it, and the measurement would reach
# the one that did).
free_ports() {
    local name port
    for name in "$@"; do
        port=${!name}
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is already in use: set $name to a free port" >&2
            exit 1
        fi
    done
}

# build_at <revision> <cargo build arguments...>: builds the revision in a git worktree under
# target/compare/ (made once), in that tree's own target directory even when CARGO_TARGET_DIR
# is set (in a shared one its binaries would replace this tree's); sets base_tree to the tree.
build_at() {
    local revision=$1
    shift
    base_tree=target/compare/$revision
    [ -d "$base_tree" ] || git worktree add --detach "$base_tree" "$revision" >&2
    (cd "$base_tree" && CARGO_TARGET_DIR=target cargo build "$@" >&2)
}
