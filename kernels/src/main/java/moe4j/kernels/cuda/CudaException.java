package moe4j.kernels.cuda;

/** A CUDA driver call failed; the message names the call, the device and the driver's error code. */
public class CudaException extends RuntimeException {

    public CudaException(String message) {
        super(message);
    }
}
