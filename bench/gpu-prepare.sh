#!/usr/bin/env bash
# Prepares, on a build machine with a JDK 25 (no GPU needed), everything bench/gpu-check.sh needs on a
# GPU machine that has neither Java nor network, in the git-ignored folder .gpu/:
#   jre.tgz          a jlink runtime with only what the check runs (java.base, the Vector API, logging,
#                    jdk.unsupported, the management API a placement across devices reads the RAM size
#                    from): about 20 MB, as everything must travel in 64 MiB with the tree
#   moe4j.jar        the command line, CUDA backend and PTX included
#   lib/*.jar        test classes of gguf, kernels and engine, and JUnit's console launcher
#   shared/fixtures  the fixture models (but the F32 one) and llama.cpp references the GPU tests compare against
#   jmh/*.jar        with JMH=1 only: the JMH benchmarks' classes and JMH's jars, for gpu-check.sh's JMH=1 (3.0 MB)
# Run it from anywhere; then carry .gpu with the working tree (see README, "GPU (CUDA)").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source bin/find-java.sh
JAVA_HOME="$(moe4j_find_java_home)"
export JAVA_HOME PATH="$JAVA_HOME/bin:$PATH"

echo "building moe4j (tests compiled, not run) ..."
./mvnw -q -B -pl cli -am install -DskipTests

rm -rf .gpu
mkdir -p .gpu/lib
cp cli/target/moe4j.jar .gpu/
for m in gguf kernels engine; do
    jar cf ".gpu/lib/$m-tests.jar" -C "$m/target/test-classes" .
done

platform="1.$(sed -n 's:.*<junit.version>5\.\([0-9.]*\)</junit.version>.*:\1:p' pom.xml)"
./mvnw -q -B dependency:copy -Dartifact="org.junit.platform:junit-platform-console-standalone:$platform" \
    -DoutputDirectory=.gpu/lib

if [ "${JMH:-0}" = 1 ]; then
    ./mvnw -q -B -pl bench -am install -DskipTests
    mkdir -p .gpu/jmh
    cp bench/target/moe4j-bench-*-SNAPSHOT.jar .gpu/jmh/moe4j-bench.jar
    ./mvnw -q -B -f bench/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        -DincludeArtifactIds=jmh-core,jopt-simple,commons-math3 -DoutputDirectory="$PWD/.gpu/jmh"
fi

echo "linking a Java runtime ..."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
jlink --add-modules java.base,jdk.incubator.vector,java.logging,jdk.unsupported,java.management,jdk.management \
    --strip-debug --no-man-pages --no-header-files --output "$tmp/jre" 2>/dev/null
tar czf .gpu/jre.tgz -C "$tmp" jre

shared=../shared/fixtures
if [ -d "$shared/models" ] && [ -d "$shared/reference" ]; then
    mkdir -p .gpu/shared/fixtures/models
    cp -r "$shared/reference" .gpu/shared/fixtures/
    # the language models the reference tests use (the embedding fixtures are not needed): with the working tree
    # (its PTX gzipped) about 62 MB of the 64 MiB a device call carries
    cp "$shared"/models/tiny-qwen3moe-*.gguf "$shared"/models/tiny-qwen3-tied-*.gguf .gpu/shared/fixtures/models/
else
    echo "WARNING: ../shared/fixtures not found: the GPU reference tests will skip" >&2
fi

echo "prepared .gpu ($(du -sh .gpu | cut -f1)):"
du -sh .gpu/* .gpu/lib/* | sed 's/^/  /'
