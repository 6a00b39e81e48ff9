#!/usr/bin/env bash
# Runs on a GPU machine without Java or network, from the repository root, with .gpu/ made by
# bench/gpu-prepare.sh: unpacks the Java runtime, lists the devices, runs the GPU tests (every kernel
# against the CPU backend, every fixture model against llama.cpp and the CPU), builds a random model of
# the Qwen3-30B-A3B shape in memory (Q4_K_M, LAYERS layers, default 48; FILE=1 writes it with make-test-model
# and loads the file instead), times prompt processing and generation on cuda:0, then times every operation
# of a decode step and of a prompt batch (GpuProfile).
# Full logs go to $OUT/logs.tgz (default .gpu/out), the table also to $OUT/table.txt, both refreshed after every
# step; the end of the output is the profile and the table. With the defaults it runs about 6 minutes.
#
#   LAYERS=48 PP=512 TG=128 REPS=3 bench/gpu-check.sh
#   PROFILE=0 bench/gpu-check.sh  skips the per-operation profile
#   SYNC=1 bench/gpu-check.sh     waits after every kernel, so a failing test names the kernel that failed
#   GRAPHS=0 bench/gpu-check.sh   launches every decode kernel from the host instead of replaying a CUDA graph
#   SYNTH=qwen3-235b-a22b:Q3_K_M bench/gpu-check.sh  also times bench --synthetic PRESET:TYPE on cuda:0 (pp512, tg64)
#   SYNTH_DEVICES=cuda:0,cpu      ... placed across the GPU and system RAM instead (e.g. a model larger than the GPU)
#   SYNTH_OFFLOAD="--n-cpu-moe 47" ... then once more on cuda:0 and the CPU with these placement flags
#   PROFILE_EXTRA=synthetic:qwen3-235b-a22b:Q3_K_M/16 ... also profiles that model (GpuBench's model names)
#   CPU_BENCH=1 bench/gpu-check.sh  also times generation on the CPU backend alone (all cores)
#   DECODE_AB=0 bench/gpu-check.sh  skips the decode A/B: profiles of 16 Qwen3-235B-A22B layers, and generation on the
#                                 model above, with each variant of DECODE_VARIANTS (default: the defaults, and the gate
#                                 and up kernel compiled for 8 blocks a multiprocessor, -Dmoe4j.cuda.pairOccupancy=8,
#                                 not yet measured); AB_GEN=0 profiles only (e.g. for options that change only Q3_K or
#                                 Q6_K kernels: the 30B shape's gate and up are Q4_K)
#   DECODE_VARIANTS="default routeWarps=4" AB_REPS=2 ... the variants ('+' joins options), e.g. the measured ones
#                                 switched back: roundOnce=false mvqBlocksPerSm=4 routeWarps=4 attentionRounds=false
#                                 combineRoundsOnce=false padQ3k=false
#   GEN_EXTRA=synthetic:qwen3-235b-a22b:Q3_K_M/16 ... also times generation (tg64) on that model; GEN_EXTRA_PP=512 a
#                                 prompt too (all 94 layers of that model load in ~50 s on an H200);
#                                 GEN_EXTRA_VARIANTS="default padQ3k=false" once per variant (as DECODE_VARIANTS)
#   TESTS=0 bench/gpu-check.sh     skips the GPU tests (~155 s), for a call that only measures; TEST_FLAGS=... runs
#                                 them with these JVM options (e.g. -Dmoe4j.cuda.padQ3k=false)
#   FULLSHAPE_AB="tiledAttention=false mmq=false" ... the full-shape test's 30B case again with each option
#   MMQ_AB=1 bench/gpu-check.sh   also times the prompt on the float tiles (-Dmoe4j.cuda.mmq=false)
#   SMALL_AB=0 bench/gpu-check.sh skips the prompt as before version 11: k and v through the matrix-vector kernels
#                                 (-Dmoe4j.cuda.smallMatricesOnTensorCoresFrom=0), every query row walking the cache
#                                 alone (-Dmoe4j.cuda.tiledAttention=false)
#   PDL_AB=1 bench/gpu-check.sh   also runs with kernels launched one after the other and no fused launches
#                                 (-Dmoe4j.cuda.pdl=false -Dmoe4j.cuda.fuse=false: the backend as it was before either)
#   FUSE_AB=1 bench/gpu-check.sh  also runs without the fused launches alone (-Dmoe4j.cuda.fuse=false)
#   NCU=1 bench/gpu-check.sh      also profiles one decode layer's kernels with Nsight Compute (ncu.txt); NCU_MODEL,
#                                 NCU_KERNELS (a regex), NCU_SKIP and NCU_COUNT choose the model and the launches,
#                                 NCU_FLAGS adds JVM options
#   HYBRID=0 bench/gpu-check.sh   skips the hybrid run (attention on cuda:0, every expert on the CPU, 16 threads)
#   HYBRID_FLAGS=-Dmoe4j.cpu.spins=200000 ... times the hybrid generation once more with these JVM flags;
#   HYBRID_ARGS=--no-repack ...   and/or these bench arguments (e.g. the file's layout where RAM bandwidth binds)
#   JMH=1 bench/gpu-check.sh      also times the CPU's matrix-vector kernels and the streaming sum on every core (JMH,
#                                 JMH_MIB=512 MiB each, JMH_TYPES=Q4_K,Q6_K to choose types); needs .gpu made by
#                                 JMH=1 bench/gpu-prepare.sh (the bench classes and JMH's jars, 3.0 MB more)
#   DEADLINE=500 bench/gpu-check.sh  skips the A/B variants and the hybrid run once they would end past 500 s
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
OUT="${OUT:-$root/.gpu/out}"
LAYERS="${LAYERS:-48}"
PP="${PP:-512}"
TG="${TG:-128}"
REPS="${REPS:-3}"
work="${MOE4J_GPU_WORK:-/tmp/moe4j-gpu}"
LOGS="$work/logs"
rm -rf "$LOGS" "$OUT/table.txt" "$OUT/logs.tgz"
mkdir -p "$OUT" "$LOGS"

rows=()
# Each row goes to $OUT/table.txt and refreshes $OUT/logs.tgz at once: a device call brings back only a few files
# of $OUT, and those it left there when it ran past its limit
row() {
    rows+=("$(printf '%-34s %s' "$1" "$2")")
    printf '%s\n' "${rows[-1]}" >> "$OUT/table.txt"
    # written aside, then renamed: a call cut off in the middle of it keeps the previous archive whole
    tar czf "$OUT/logs.tgz.part" -C "$LOGS" . 2> /dev/null && mv "$OUT/logs.tgz.part" "$OUT/logs.tgz"
}
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }
# the JVM options of a variant into the array extra: none for "default", else -Dmoe4j.cuda.OPTION for each of its
# '+'-joined options (e.g. roundOnce=false+routeWarps=4)
variant_flags() {
    extra=()
    if [ "$1" != default ]; then
        local opts
        IFS='+' read -r -a opts <<< "$1"
        extra=("${opts[@]/#/-Dmoe4j.cuda.}")
    fi
}
started=$(date +%s)
# seconds left before DEADLINE (seconds from the start; unset: no limit): optional steps that would not finish are
# skipped, so that a call cut off at its limit still ends with its table
time_left() { echo $(( ${DEADLINE:-1000000} - ($(date +%s) - started) )); }

[ -f .gpu/jre.tgz ] || { echo "gpu-check: .gpu/jre.tgz missing: run bench/gpu-prepare.sh on the build machine" >&2; exit 1; }
tar xzf .gpu/jre.tgz -C "$work"
java="$work/jre/bin/java"
flags=(--add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -XX:PerMethodTrapLimit=10000
    -XX:PerMethodRecompilationCutoff=10000 -Djava.io.tmpdir="$work")
[ "${SYNC:-0}" = 1 ] && flags+=(-Dmoe4j.cuda.sync=true)
[ "${GRAPHS:-1}" = 0 ] && flags+=(-Dmoe4j.cuda.graphs=false)
if [ -d "$root/../shared/fixtures" ]; then
    shared="$root/../shared"
else
    shared="$root/.gpu/shared"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > "$LOGS/nvidia-smi.txt" 2>&1
row "GPU" "$(sed -n 2p "$LOGS/nvidia-smi.txt")"

"$java" "${flags[@]}" -jar .gpu/moe4j.jar info --devices > "$LOGS/devices.txt" 2>&1
row "moe4j info --devices" "$(grep -m1 '^cuda' "$LOGS/devices.txt")"

# 1. GPU tests (TESTS=0 skips them, for a call that only measures)
cp=".gpu/moe4j.jar:.gpu/lib/gguf-tests.jar:.gpu/lib/kernels-tests.jar:.gpu/lib/engine-tests.jar"
: > "$LOGS/failures-head.txt"
: > "$LOGS/agreement.txt"
: > "$LOGS/gpu-tests.log"
if [ "${TESTS:-1}" = 1 ]; then
    t=$(date +%s)
    # shellcheck disable=SC2086  # TEST_FLAGS: options split at spaces
    timeout 240 "$java" "${flags[@]}" ${TEST_FLAGS:-} -Xmx8g -Dmoe4j.shared="$shared" \
        -jar .gpu/lib/junit-platform-console-standalone-*.jar execute --disable-banner --disable-ansi-colors \
        --details=tree --class-path "$cp" --select-class moe4j.kernels.cuda.CudaBackendTest \
        --select-class moe4j.kernels.cuda.CudaAvailabilityTest --select-class moe4j.engine.CudaReferenceTest \
        --select-class moe4j.engine.CudaHybridTest --select-class moe4j.engine.CudaFullShapeTest \
        > "$LOGS/gpu-tests.log" 2>&1
    status=$?
    summary=$(grep -E '^\[ +[0-9]+ tests (successful|failed|skipped|aborted) +\]' "$LOGS/gpu-tests.log" \
        | tr -s ' []' ' ' | paste -sd, -)
    row "GPU tests${TEST_FLAGS:+ $TEST_FLAGS} (exit $status, $(elapsed $t))" "${summary:-no summary: see gpu-tests.log}"
    grep -E '✘' "$LOGS/gpu-tests.log" | head -8 | cut -c1-240 > "$LOGS/failures-head.txt"
    sed -n '/GPU (cuda:0) agreement/,/^$/p' "$LOGS/gpu-tests.log" > "$LOGS/agreement.txt"
else
    row "GPU tests" "skipped (TESTS=0)"
fi

# 1a. Optional (FULLSHAPE_AB="tiledAttention=false mmq=false"): the full-shape test's 30B case once more with each of
# these options ('+' joins several), to see which part of the prompt path its distance to the CPU comes from
for variant in ${FULLSHAPE_AB:-}; do
    if [ "$(time_left)" -lt 60 ]; then row "full-shape 30B/2, $variant" "skipped: DEADLINE near"; continue; fi
    variant_flags "$variant"
    log="$LOGS/fullshape-${variant//=/-}.log"
    timeout 120 "$java" "${flags[@]}" "${extra[@]}" -Xmx8g -jar .gpu/lib/junit-platform-console-standalone-*.jar \
        execute --disable-banner --disable-ansi-colors --details=tree --class-path "$cp" \
        --select-iteration 'method:moe4j.engine.CudaFullShapeTest#logitsMatchTheCpuBackend(java.lang.String)[0]' \
        > "$log" 2>&1
    row "full-shape 30B/2, $variant (exit $?)" "$(grep -m1 'GPU vs CPU:' "$log" | sed "s/^.*GPU vs CPU: //" | cut -c1-420)"
done

# 2. The command line on the GPU
fixture="$shared/fixtures/models/tiny-qwen3moe-Q4_K_M.gguf"
timeout 60 "$java" "${flags[@]}" -jar .gpu/moe4j.jar generate -m "$fixture" --device cuda:0 -p "Hello" -n 8 \
    > "$LOGS/generate.log" 2>&1
status=$?
row "moe4j generate --device cuda:0" "exit $status, $( (grep -m1 '^loaded' "$LOGS/generate.log" || tail -n1 "$LOGS/generate.log") | cut -c1-100)"

# 3. Speed on the Qwen3-30B-A3B shape, Q4_K_M: built in memory by default, as bench --synthetic builds it (the
# bytes make-test-model would write, without writing 18 GB to disk and reading them back); FILE=1 writes the file
if [ "${FILE:-0}" = 1 ]; then
    model="$work/qwen3-30b-a3b-${LAYERS}L-Q4_K_M.gguf"
    t=$(date +%s)
    timeout 240 "$java" "${flags[@]}" -jar .gpu/moe4j.jar make-test-model -o "$model" --preset qwen3-30b-a3b \
        --layers "$LAYERS" --type Q4_K_M > "$LOGS/make-test-model.log" 2>&1
    row "make-test-model ${LAYERS} layers" "exit $?, $(elapsed $t), $(du -h "$model" 2>/dev/null | cut -f1)"
    benchModel=(-m "$model")
else
    model="synthetic:qwen3-30b-a3b:Q4_K_M/$LAYERS"
    benchModel=(--synthetic qwen3-30b-a3b:Q4_K_M --layers "$LAYERS")
fi

gpu_bench() {  # gpu_bench LOG PP TG REPS JVM-FLAGS...: GpuBench on $model into $LOGS/LOG, with its exit status
    local log="$1" pp="$2" tg="$3" reps="$4"
    shift 4
    timeout 150 "$java" "${flags[@]}" "$@" -Xmx16g -cp ".gpu/moe4j.jar:.gpu/lib/engine-tests.jar" \
        moe4j.engine.GpuBench "$model" cuda:0 "$pp" "$tg" "$reps" > "$LOGS/$log" 2>&1
}
t=$(date +%s)
gpu_bench bench.log "$PP" "$TG" "$REPS"
status=$?
row "GpuBench (exit $status, $(elapsed $t))" "$( (grep -m1 '^model' "$LOGS/bench.log" || tail -n1 "$LOGS/bench.log") | cut -c1-110)"
row "  prompt pp$PP" "$(sed -n "s/^pp$PP //p" "$LOGS/bench.log")"
row "  generation tg$TG" "$(sed -n "s/^tg$TG //p" "$LOGS/bench.log")"
# the same model with launch options turned off, two repetitions: what each change of the backend brings
ab_run() {  # ab_run LOG LABEL JVM-FLAGS...
    local log="$1" label="$2"
    shift 2
    gpu_bench "$log" "$PP" "$TG" 2 "$@"
    row "  $label (exit $?)" \
        "pp$PP $(sed -n "s/^pp$PP \([0-9.]*\).*/\1/p" "$LOGS/$log"), tg$TG $(sed -n "s/^tg$TG //p" "$LOGS/$log")"
}
if [ "${PDL_AB:-0}" = 1 ]; then
    ab_run bench-sequential.log "one after the other, unfused" -Dmoe4j.cuda.pdl=false -Dmoe4j.cuda.fuse=false
fi
if [ "${FUSE_AB:-0}" = 1 ]; then
    ab_run bench-unfused.log "overlapped, unfused" -Dmoe4j.cuda.fuse=false
fi
prompt_run() {  # prompt_run LOG LABEL JVM-FLAGS...: the prompt once more with experimental options
    local log="$1" label="$2"
    shift 2
    gpu_bench "$log" "$PP" 8 "$REPS" "$@"
    row "  prompt pp$PP, $label (exit $?)" "$(sed -n "s/^pp$PP //p" "$LOGS/$log")"
}
if [ "${SMALL_AB:-1}" = 1 ]; then
    # as before version 11: k and v through the matrix-vector kernels at any batch, every query row walking the cache
    prompt_run bench-untiled.log "k, v on matrix-vector, untiled attention" \
        -Dmoe4j.cuda.smallMatricesOnTensorCoresFrom=0 -Dmoe4j.cuda.tiledAttention=false
fi
if [ "${MMQ_AB:-0}" = 1 ]; then
    # the prompt's Q3_K-Q6_K products on the float tiles instead of the tensor cores
    prompt_run bench-float-tiles.log "float tiles" -Dmoe4j.cuda.mmq=false
fi
row "  llama.cpp CUDA on H100 (anchor)" "pp512 9500 tok/s, tg128 292 tok/s (48 layers)"

# 4. Where the time goes: every operation timed by CUDA events (direct launches), decode and prompt; then the
# decode step once more with the previous attention kernel (4 warps per head) for comparison
prof=(-Xmx16g -Dmoe4j.cuda.profile=true -cp ".gpu/moe4j.jar:.gpu/lib/engine-tests.jar" moe4j.engine.GpuProfile)
if [ "${PROFILE:-1}" = 1 ]; then
    t=$(date +%s)
    timeout 90 "$java" "${flags[@]}" "${prof[@]}" "$model" cuda:0 "$PP" 8 > "$LOGS/profile.log" 2>&1
    status=$?
    row "GpuProfile (exit $status, $(elapsed $t))" "$(grep -m1 '^== decode' "$LOGS/profile.log" | cut -c4-110)"
    if [ -n "${PROFILE_EXTRA:-}" ]; then
        t=$(date +%s)
        timeout 150 "$java" "${flags[@]}" "${prof[@]}" "$PROFILE_EXTRA" cuda:0 "$PP" 8 > "$LOGS/profile-extra.log" 2>&1
        row "GpuProfile $PROFILE_EXTRA (exit $?, $(elapsed $t))" \
            "$(grep -m1 '^== decode' "$LOGS/profile-extra.log" | cut -c4-110)"
    fi
fi

# 4. Optional (GEN_EXTRA=synthetic:qwen3-235b-a22b:Q3_K_M/16): generation on another model (GpuBench's model names),
# e.g. a part of a model too large to build whole within a call, to scale to all its layers
if [ -n "${GEN_EXTRA:-}" ]; then
    for variant in ${GEN_EXTRA_VARIANTS:-default}; do
        if [ "$(time_left)" -lt 60 ]; then row "GpuBench $GEN_EXTRA, $variant" "skipped: DEADLINE near"; continue; fi
        variant_flags "$variant"
        log="$LOGS/bench-extra-${variant//=/-}.log"
        t=$(date +%s)
        timeout 150 "$java" "${flags[@]}" "${extra[@]}" -Xmx16g -cp ".gpu/moe4j.jar:.gpu/lib/engine-tests.jar" \
            moe4j.engine.GpuBench "$GEN_EXTRA" cuda:0 "${GEN_EXTRA_PP:-0}" 64 "$REPS" > "$log" 2>&1
        row "GpuBench $GEN_EXTRA, $variant (exit $?, $(elapsed $t))" "tg64 $(sed -n 's/^tg64 //p' "$log")"
        if [ "${GEN_EXTRA_PP:-0}" != 0 ]; then
            row "  prompt pp$GEN_EXTRA_PP" "$(sed -n "s/^pp$GEN_EXTRA_PP //p" "$log")"
        fi
    done
fi

# 4a. Decode A/B on 16 layers of the 235B shape (profiled) and on the model above (generation): the defaults against
# the variants of DECODE_VARIANTS
if [ "${DECODE_AB:-1}" = 1 ]; then
    for variant in ${DECODE_VARIANTS:-default pairOccupancy=8}; do
        if [ "$(time_left)" -lt 40 ]; then row "235B/16 decode, $variant" "skipped: DEADLINE near"; continue; fi
        variant_flags "$variant"
        name="${variant//=/-}"
        log="$LOGS/profile-235-$name.log"
        timeout 90 "$java" "${flags[@]}" "${extra[@]}" "${prof[@]}" synthetic:qwen3-235b-a22b:Q3_K_M/16 cuda:0 76 8 \
            decode > "$log" 2>&1
        row "235B/16 decode, $variant (exit $?)" "$(grep -m1 '^== decode' "$log" | sed 's/.*GPU \([0-9]* us\).*/\1/')"
        while read -r line; do
            row "    " "$(echo "$line" | tr -s ' ' | cut -c1-90)"
        done < <(grep -E 'mvq|add_rms_norm|route|round_rows|attention_decode' "$log" | head -7)
        [ "$variant" = default ] || [ "${AB_GEN:-1}" = 0 ] && continue
        if [ "$(time_left)" -lt 30 ]; then row "  generation tg$TG, $variant" "skipped: DEADLINE near"; continue; fi
        gpu_bench "bench-$name.log" 0 "$TG" "${AB_REPS:-$REPS}" "${extra[@]}"
        row "  generation tg$TG, $variant (exit $?)" "$(sed -n "s/^tg$TG //p" "$LOGS/bench-$name.log")"
    done
fi

# 4b. Optional (NCU=1): Nsight Compute's view of one decode layer's kernels (direct launches)
if [ "${NCU:-0}" = 1 ] && command -v ncu > /dev/null; then
    t=$(date +%s)
    # decoding only (no prompt batch): the default skip passes most of the first token's launches (about 460 for
    # 48 layers), then 16 launches of the kernels named
    # shellcheck disable=SC2086  # NCU_FLAGS: options split at spaces
    timeout "${NCU_TIMEOUT:-120}" ncu --launch-skip "${NCU_SKIP:-400}" --launch-count "${NCU_COUNT:-16}" \
        -k "regex:${NCU_KERNELS:-^(mvq|attention_decode|route_f32|add_rms_norm|norm_rope_store)}" \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --section MemoryWorkloadAnalysis \
        "$java" "${flags[@]}" ${NCU_FLAGS:-} -Dmoe4j.cuda.graphs=false -Xmx16g -cp ".gpu/moe4j.jar:.gpu/lib/engine-tests.jar" \
        moe4j.engine.GpuBench "${NCU_MODEL:-$model}" cuda:0 0 4 1 > "$LOGS/ncu.txt" 2>&1
    row "ncu (exit $?, $(elapsed $t))" "$LOGS/ncu.txt"
fi
# 5. Hybrid placement: attention on the GPU, every routed expert in RAM on the CPU backend (llama.cpp's
# -ot exps=CPU); anchor: llama.cpp on an H100 with 16 threads, pp512 790 tok/s, tg64 39 tok/s
if [ "${HYBRID:-1}" = 1 ] && [ "$(time_left)" -lt 60 ]; then
    row "hybrid cuda:0 + cpu --cpu-moe" "skipped: DEADLINE near"
elif [ "${HYBRID:-1}" = 1 ]; then
    t=$(date +%s)
    # the GC log: CPU kernels whose vectors C2 left boxed show as hundreds of pauses (bench/CPU-NOTES.md, "A JIT hazard")
    timeout 240 "$java" "${flags[@]}" -Xmx8g -Xlog:gc:file="$LOGS/hybrid-gc.log" -jar .gpu/moe4j.jar bench \
        "${benchModel[@]}" --devices cuda:0,cpu --cpu-moe -t "$(nproc)" -p 512 -n 64 -r 2 > "$LOGS/hybrid.log" 2>&1
    row "hybrid cuda:0 + cpu --cpu-moe (exit $?, $(elapsed $t))" \
        "$(nproc) threads, $(grep -c Pause "$LOGS/hybrid-gc.log" 2> /dev/null) GC pauses"
    while IFS='|' read -r _ _ _ _ _ _ test ts _; do
        row "  $(echo $test)" "$(echo $ts) tok/s"
    done < <(grep -E '^\| .*(pp|tg)[0-9]' "$LOGS/hybrid.log")
    row "  llama.cpp H100, 16 threads (anchor)" "pp512 790 tok/s, tg64 39 tok/s"
    if [ -n "${HYBRID_FLAGS:-}${HYBRID_ARGS:-}" ]; then
        # generation once more with other JVM flags or bench arguments, e.g. HYBRID_FLAGS=-Dmoe4j.cpu.spins=200000,
        # HYBRID_ARGS=--no-repack
        # shellcheck disable=SC2086
        timeout 120 "$java" "${flags[@]}" ${HYBRID_FLAGS:-} -Xmx8g -jar .gpu/moe4j.jar bench "${benchModel[@]}" \
            --devices cuda:0,cpu --cpu-moe -t "$(nproc)" -p 0 -n 64 -r 2 ${HYBRID_ARGS:-} > "$LOGS/hybrid-ab.log" 2>&1
        rc=$?
        # shellcheck disable=SC2086
        row "  tg64, $(echo ${HYBRID_FLAGS:-} ${HYBRID_ARGS:-}) (exit $rc)" \
            "$(grep -E '^\| .*tg64' "$LOGS/hybrid-ab.log" | cut -d'|' -f8 | tr -s ' ')"
    fi
fi
# 5b. Optional (CPU_BENCH=1): the same model on the CPU backend alone, all cores: what the hybrid run's experts
# can reach on this machine's RAM
if [ "${CPU_BENCH:-0}" = 1 ]; then
    t=$(date +%s)
    timeout 150 "$java" "${flags[@]}" -Xmx8g -jar .gpu/moe4j.jar bench "${benchModel[@]}" --device cpu \
        -t "$(nproc)" -p 0 -n 16 -r 2 > "$LOGS/cpu.log" 2>&1
    row "cpu alone (exit $?, $(elapsed $t))" "$(nproc) threads"
    while IFS='|' read -r _ _ _ _ _ _ test ts _; do
        row "  $(echo $test)" "$(echo $ts) tok/s"
    done < <(grep -E '^\| .*(pp|tg)[0-9]' "$LOGS/cpu.log")
fi
# 5c. Optional (JMH=1, with .gpu prepared by JMH=1 bench/gpu-prepare.sh): the CPU's matrix-vector kernels on every
# core against the streaming sum on every core (JMH), each type over JMH_MIB MiB (default 512, past a server's
# last-level cache): how near the machine's read bandwidth the kernels come where cores are not what binds them
if [ "${JMH:-0}" = 1 ] && [ ! -d .gpu/jmh ]; then
    row "jmh" "skipped: .gpu/jmh missing (JMH=1 bench/gpu-prepare.sh)"
elif [ "${JMH:-0}" = 1 ] && [ "$(time_left)" -lt 120 ]; then
    row "jmh" "skipped: DEADLINE near"
elif [ "${JMH:-0}" = 1 ]; then
    t=$(date +%s)
    jmhCp=".gpu/moe4j.jar:$(find .gpu/jmh -name '*.jar' | sort | paste -sd:)"
    jmhMib="${JMH_MIB:-512}"
    # at most 240 s a run, and never past DEADLINE: JMH writes its CSV only at the end, so a run cut off gives nothing
    jmh_run() {
        local limit=$(( $(time_left) - 10 ))
        [ "$limit" -gt 240 ] && limit=240
        [ "$limit" -lt 30 ] && return 124
        timeout "$limit" "$java" "${flags[@]}" -cp "$jmhCp" org.openjdk.jmh.Main -f 1 -wi 1 -w 1s -i 3 -r 1s -rf csv "$@"
    }
    jmh_run -rff "$LOGS/jmh.csv" 'MatVecBenchmark.matVecAllThreads|StreamingReadBenchmark.allThreads' \
        -p kib=$((jmhMib * 1024)) -p mib="$jmhMib" ${JMH_TYPES:+-p type=$JMH_TYPES} > "$LOGS/jmh.log" 2>&1
    rc=$?
    # the repacked layouts of the types asked for (all three unless JMH_TYPES names others only)
    repackedTypes=$(echo "${JMH_TYPES:-Q4_K,Q5_K,Q6_K}" | tr ',' '\n' | grep -xE 'Q4_K|Q5_K|Q6_K' | paste -sd,)
    if [ -n "$repackedTypes" ]; then
        jmh_run -rff "$LOGS/jmh-repacked.csv" 'MatVecBenchmark.matVecAllThreads' -p kib=$((jmhMib * 1024)) \
            -p repacked=true -p type="$repackedTypes" > "$LOGS/jmh-repacked.log" 2>&1
        rc="$rc, $?"
    fi
    row "jmh, $(nproc) threads, ${jmhMib} MiB (exit $rc, $(elapsed $t))" "GB/s of weights; fraction of the streaming sum"
    stream=$(awk -F, '/allThreads:weightBytes/ && /StreamingRead/ {gsub(/"/, ""); print $5}' "$LOGS/jmh.csv")
    for csv in "$LOGS/jmh.csv" "$LOGS/jmh-repacked.csv"; do
        [ -f "$csv" ] || continue
        while IFS=, read -r name score type repacked; do
            row "  $name $type$([ "$repacked" = true ] && echo ' repacked')" \
                "$(awk -v s="$score" -v b="${stream:-0}" 'BEGIN { printf "%.1f", s / 1e9; if (b > 0) printf " (%.2f)", s / b }')"
        done < <(awk -F, '{ sub(/\r$/, "") } NR == 1 { for (i = 1; i <= NF; i++) { gsub(/"/, "", $i); col[$i] = i }; next }
            /weightBytes/ { gsub(/"/, ""); n = $1; sub(/^.*\./, "", n); sub(/:weightBytes/, "", n)
                print n "," $5 "," (("Param: type" in col) ? $(col["Param: type"]) : "") "," \
                    (("Param: repacked" in col) ? $(col["Param: repacked"]) : "") }' "$csv")
    done
fi
if [ "${FILE:-0}" = 1 ]; then rm -f "$model"; fi

# 6. Optional: a full-size model built in memory by bench --synthetic (no file), e.g.
# SYNTH=qwen3-235b-a22b:Q3_K_M (all 94 layers, 105 GiB of weights: held once in host RAM, uploaded to the GPU);
# SYNTH_DEVICES=cuda:0,cpu places it automatically across the GPU and system RAM (all cores): a model larger
# than the GPU runs with what does not fit in RAM, and bench prints the placement
if [ -n "${SYNTH:-}" ]; then
    t=$(date +%s)
    if [ -n "${SYNTH_DEVICES:-}" ]; then
        placement=(--devices "$SYNTH_DEVICES" -t "$(nproc)")
    else
        placement=(--device cuda:0)
    fi
    timeout "${SYNTH_TIMEOUT:-480}" "$java" "${flags[@]}" -jar .gpu/moe4j.jar bench --synthetic "$SYNTH" \
        "${placement[@]}" -p 512 -n 64 -r 1 > "$LOGS/synthetic.log" 2>&1
    status=$?
    row "bench --synthetic $SYNTH (exit $status, $(elapsed $t))" \
        "$( (grep -m1 '^| synthetic-' "$LOGS/synthetic.log" | cut -d'|' -f3-5 || true; grep -m1 '^moe4j: error' "$LOGS/synthetic.log") \
            | tr -s ' ' | cut -c1-110)"
    while IFS='|' read -r _ _ _ _ _ _ test ts _; do
        row "  $(echo $test)" "$(echo $ts) tok/s"
    done < <(grep '^| synthetic-' "$LOGS/synthetic.log")
fi
# 7. Optional: the same synthetic model with part of it in system RAM, e.g. SYNTH_OFFLOAD="--n-cpu-moe 47"
# (attention of every layer and the experts of the last 47 on the GPU, the first 47 layers' experts on the CPU)
if [ -n "${SYNTH:-}" ] && [ -n "${SYNTH_OFFLOAD:-}" ]; then
    t=$(date +%s)
    # shellcheck disable=SC2086
    timeout "${SYNTH_OFFLOAD_TIMEOUT:-300}" "$java" "${flags[@]}" -jar .gpu/moe4j.jar bench --synthetic "$SYNTH" \
        --devices cuda:0,cpu -t "$(nproc)" $SYNTH_OFFLOAD -p 512 -n 64 -r 1 > "$LOGS/synthetic-offload.log" 2>&1
    row "bench --synthetic $SYNTH $SYNTH_OFFLOAD (exit $?, $(elapsed $t))" "cuda:0 + cpu, $(nproc) threads"
    while IFS='|' read -r _ _ _ _ _ _ test ts _; do
        row "  $(echo $test)" "$(echo $ts) tok/s"
    done < <(grep '^| synthetic-' "$LOGS/synthetic-offload.log")
    grep -m1 '^moe4j: error' "$LOGS/synthetic-offload.log" | cut -c1-200
fi

echo
echo "---- failures (first lines; full log gpu-tests.log in $OUT/logs.tgz) ----"
cat "$LOGS/failures-head.txt"
echo "---- GPU vs llama.cpp / CPU agreement ----"
head -30 "$LOGS/agreement.txt"
grep -E 'GPU vs CPU: batched|position [0-9]+: GPU batched' "$LOGS/gpu-tests.log" | sed 's/^[^a-z]*//' | cut -c1-480
if [ "${PROFILE:-1}" = 1 ]; then
    echo "---- GPU time per operation (full: profile.log in $OUT/logs.tgz) ----"
    grep -v -E '^WARNING|^profile ' "$LOGS/profile.log" | cut -c1-100 | head -70
    if [ -f "$LOGS/profile-extra.log" ]; then
        echo "---- GPU time per operation, $PROFILE_EXTRA (full: profile-extra.log in $OUT/logs.tgz) ----"
        grep -v -E '^WARNING|^profile ' "$LOGS/profile-extra.log" | cut -c1-100 | head -45
    fi
fi
for log in synthetic synthetic-offload; do
    if [ -f "$LOGS/$log.log" ] && grep -q '^placement:' "$LOGS/$log.log"; then
        echo "---- placement of bench --synthetic $SYNTH ($log) ----"
        sed -n '/^placement:/,/^| model/p' "$LOGS/$log.log" | grep -v '^| model' | cut -c1-140
    fi
done
echo "---- moe4j GPU check ----"
printf '%s\n' "${rows[@]}"
