package moe4j.langchain4j;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

import dev.langchain4j.data.embedding.Embedding;
import dev.langchain4j.data.segment.TextSegment;
import dev.langchain4j.model.embedding.EmbeddingModel;
import dev.langchain4j.model.output.Response;
import dev.langchain4j.model.output.TokenUsage;
import moe4j.engine.embedding.Embedder;

/**
 * LangChain4j's {@link EmbeddingModel} on a moe4j {@link Embedder}: its pooling, normalization and prefix
 * apply; thread-safe as the embedder is. The embedder stays the caller's to close.
 */
public final class Moe4jEmbeddingModel implements EmbeddingModel {

    private final Embedder embedder;
    private final String modelName;

    public Moe4jEmbeddingModel(Embedder embedder) {
        this.embedder = Objects.requireNonNull(embedder, "embedder");
        this.modelName = ChatRunner.modelName(embedder.model());
    }

    /** All segments are tokenized and checked first, then embedded one after another on one session. */
    @Override
    public Response<List<Embedding>> embedAll(List<TextSegment> segments) {
        List<int[]> tokens = new ArrayList<>(segments.size());
        int count = 0;
        for (TextSegment segment : segments) {
            int[] t = embedder.tokenize(segment.text());
            tokens.add(t);
            count += t.length;
        }
        List<Embedding> embeddings = new ArrayList<>(segments.size());
        for (float[] v : embedder.embedAllTokens(tokens)) {
            embeddings.add(Embedding.from(v));
        }
        return Response.from(embeddings, new TokenUsage(count));
    }

    @Override
    public int dimension() {
        return embedder.dimension();
    }

    @Override
    public String modelName() {
        return modelName;
    }
}
