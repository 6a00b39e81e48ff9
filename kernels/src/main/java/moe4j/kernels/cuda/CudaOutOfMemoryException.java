package moe4j.kernels.cuda;

/** Device memory ran out; the message says what did not fit and what the device already holds. */
public final class CudaOutOfMemoryException extends CudaException {

    public CudaOutOfMemoryException(String message) {
        super(message);
    }
}
