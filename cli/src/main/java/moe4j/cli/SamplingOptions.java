package moe4j.cli;

import java.util.SplittableRandom;

import moe4j.engine.sampling.SamplerSettings;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/** Sampling flags, with llama.cpp's defaults and names. */
final class SamplingOptions {

    @Option(names = "--temp", paramLabel = "T", defaultValue = "0.8",
            description = "temperature; 0 always picks the most likely token (default: ${DEFAULT-VALUE})")
    float temperature;

    @Option(names = "--top-k", paramLabel = "K", defaultValue = "40",
            description = "keep the K most likely tokens; 0 keeps all (default: ${DEFAULT-VALUE})")
    int topK;

    @Option(names = "--top-p", paramLabel = "P", defaultValue = "0.95",
            description = "keep the most likely tokens up to probability P; 1 keeps all (default: ${DEFAULT-VALUE})")
    float topP;

    @Option(names = "--min-p", paramLabel = "P", defaultValue = "0.05",
            description = "drop tokens less likely than P times the most likely; 0 keeps all (default: ${DEFAULT-VALUE})")
    float minP;

    @Option(names = "--repeat-penalty", paramLabel = "R", defaultValue = "1.0",
            description = "penalize recently seen tokens; 1 = off (default: ${DEFAULT-VALUE})")
    float repeatPenalty;

    @Option(names = "--presence-penalty", paramLabel = "P", defaultValue = "0",
            description = "subtracted from the logit of every recently seen token; 0 = off (default: ${DEFAULT-VALUE})")
    float presencePenalty;

    @Option(names = "--frequency-penalty", paramLabel = "P", defaultValue = "0",
            description = "subtracted per occurrence of a recently seen token; 0 = off (default: ${DEFAULT-VALUE})")
    float frequencyPenalty;

    @Option(names = "--repeat-last-n", paramLabel = "N", defaultValue = "64",
            description = "how many recent tokens the penalties consider (default: ${DEFAULT-VALUE})")
    int repeatLastN;

    @Option(names = {"-s", "--seed"}, paramLabel = "S",
            description = "random seed; the same seed, prompt and settings give the same text (default: random)")
    Long seed;

    /** The sampler settings these flags ask for; invalid values are usage errors. */
    SamplerSettings settings(CommandLine cl) {
        long s = seed != null ? seed : new SplittableRandom().nextLong();
        try {
            return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, presencePenalty, frequencyPenalty,
                    repeatLastN, s);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, e.getMessage(), e);
        }
    }
}
