namespace Appliance.BlockDev.Images;

/// <summary>The kinds of image failure a client can be told about.</summary>
public enum ImageErrorKind
{
    /// <summary>The backing store failed the I/O.</summary>
    Io,
    /// <summary>No space left for the data.</summary>
    NoSpace,
    /// <summary>The image is read-only or the caller may not write it.</summary>
    ReadOnly,
    /// <summary>The request is not valid for this image (out of range, bad argument).</summary>
    Invalid,
}

/// <summary>An image operation failed. <see cref="Offset"/>, when known, is the first byte that failed.</summary>
public class ImageException(ImageErrorKind kind, string message, long? offset = null, Exception? inner = null)
    : IOException(message, inner)
{
    public ImageErrorKind Kind { get; } = kind;

    public long? Offset { get; } = offset;
}

/// <summary>A name, size or operation on the image catalog was refused (bad name, exists, not found, in use).</summary>
public sealed class ImageCatalogException(ImageCatalogError error, string message) : Exception(message)
{
    public ImageCatalogError Error { get; } = error;
}

/// <summary>Why a catalog operation was refused.</summary>
public enum ImageCatalogError
{
    InvalidName,
    InvalidSize,
    NotFound,
    Exists,
    InUse,
    WouldShrink,
}
