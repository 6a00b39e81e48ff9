package moe4j.kernels.cuda;

/**
 * CUDA cannot be used here: no driver, no device, a device that does not exist or is too old. The
 * message is one line meant for the user.
 */
public final class CudaUnavailableException extends CudaException {

    public CudaUnavailableException(String message) {
        super(message);
    }
}
