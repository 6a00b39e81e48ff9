#!/usr/bin/env bash
# shellcheck shell=bash
# Locates a JDK whose major version is at least MOE4J_MIN_JAVA (default 25).
# Sourced by ./moe4j and .ci/run so that both pick the JDK the same way.
# Usage: source bin/find-java.sh; home=$(moe4j_find_java_home) || exit 1

MOE4J_MIN_JAVA=${MOE4J_MIN_JAVA:-25}

# Prints the major version of the JDK at $1, or nothing when $1 is not a usable JDK.
moe4j_java_major() {
    local home=$1 version=
    [[ -x "$home/bin/java" ]] || return 1
    if [[ -r "$home/release" ]]; then
        version=$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release")
    fi
    if [[ -z "$version" ]]; then
        version=$("$home/bin/java" -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n 1)
    fi
    [[ -n "$version" ]] || return 1
    version=${version#1.}        # "1.8.0_402" is Java 8
    echo "${version%%[.+-]*}"
}

moe4j_is_recent_java() {
    local major
    major=$(moe4j_java_major "$1") || return 1
    [[ "$major" =~ ^[0-9]+$ ]] && (( major >= MOE4J_MIN_JAVA ))
}

# Prints the home of the first JDK >= MOE4J_MIN_JAVA found: $JAVA_HOME, then the usual install
# locations (version-named directories first), then the java on PATH. Returns 1 when none is found.
moe4j_find_java_home() {
    local candidate
    local -a candidates=()
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
    shopt -s nullglob
    candidates+=(/usr/lib/jvm/*25* /usr/lib/jvm/*-2[5-9]* /usr/lib/jvm/*-[3-9][0-9]*
                 /usr/lib/jvm/* /usr/java/* /opt/java/* /opt/jdk* /opt/*jdk*
                 "$HOME"/.sdkman/candidates/java/* "$HOME"/.jdks/*
                 /Library/Java/JavaVirtualMachines/*/Contents/Home)
    shopt -u nullglob
    for candidate in "${candidates[@]}"; do
        if moe4j_is_recent_java "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    if command -v java >/dev/null 2>&1; then
        candidate=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
        if moe4j_is_recent_java "$candidate"; then
            echo "$candidate"
            return 0
        fi
    fi
    return 1
}

# Run directly (not sourced), print the JDK home: export JAVA_HOME=$(bin/find-java.sh)
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    moe4j_find_java_home || { echo "no JDK $MOE4J_MIN_JAVA or newer found" >&2; exit 1; }
fi
