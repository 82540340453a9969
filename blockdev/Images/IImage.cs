namespace Appliance.BlockDev.Images;

/// <summary>Allocation state of a run of an image (the bits of NBD's base:allocation context).</summary>
[Flags]
public enum ExtentFlags : uint
{
    /// <summary>Allocated data (or unknown).</summary>
    Data = 0,
    /// <summary>Not allocated in the backing store; writing there may need space.</summary>
    Hole = 1,
    /// <summary>Reads as zeroes.</summary>
    Zero = 2,
}

/// <summary>One run of an image with the same allocation state.</summary>
public readonly record struct ImageExtent(long Length, ExtentFlags Flags);

/// <summary>How a zeroing request may be carried out.</summary>
[Flags]
public enum ZeroOptions
{
    None = 0,
    /// <summary>The range must stay allocated (NBD_CMD_FLAG_NO_HOLE): no hole may be punched.</summary>
    NoHole = 1,
    /// <summary>Only do it if it is faster than writing zeroes (NBD_CMD_FLAG_FAST_ZERO); otherwise change nothing.</summary>
    FastOnly = 2,
}

/// <summary>
/// A block image: what an NBD export serves. Local images are sparse files; cluster images (striped over objects)
/// implement the same interface, so the server does not change when they arrive.
/// </summary>
/// <remarks>
/// Contract: every offset/length the server passes is already checked against <see cref="Size"/>. A completed
/// write is visible to every later read through any handle of the same image. <see cref="FlushAsync"/> makes every
/// write completed before it durable, whichever connection made it, when <see cref="FlushCoversAllWriters"/> is
/// true (this is what NBD_FLAG_CAN_MULTI_CONN promises). Errors are thrown as <see cref="ImageException"/> or
/// <see cref="IOException"/>; the NBD layer maps them to protocol errors in one place.
/// </remarks>
public interface IImage : IAsyncDisposable
{
    /// <summary>The image's name (the export name).</summary>
    string Name { get; }

    /// <summary>The size in bytes, fixed while the image is open.</summary>
    long Size { get; }

    /// <summary>True when the image was opened read-only: writes, trims and zeroing throw.</summary>
    bool IsReadOnly { get; }

    /// <summary>True when a flush through this image makes writes completed through any other handle durable too.</summary>
    bool FlushCoversAllWriters { get; }

    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/> (holes read as zeroes).</summary>
    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct);

    /// <summary>Writes the bytes; with <paramref name="fua"/> they are durable before this completes.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, bool fua, CancellationToken ct);

    /// <summary>Makes every completed write durable.</summary>
    ValueTask FlushAsync(CancellationToken ct);

    /// <summary>A hint that the range is no longer needed: it may be deallocated (then it reads as zeroes).</summary>
    ValueTask TrimAsync(long offset, long length, bool fua, CancellationToken ct);

    /// <summary>
    /// Makes the range read as zeroes. Returns false, having changed nothing, when <see cref="ZeroOptions.FastOnly"/>
    /// is set and the image cannot do it faster than writing zeroes.
    /// </summary>
    ValueTask<bool> ZeroAsync(long offset, long length, ZeroOptions options, bool fua, CancellationToken ct);

    /// <summary>
    /// Describes the allocation of the image from <paramref name="offset"/> on, as consecutive extents, at most
    /// <paramref name="destination"/>.Length of them and none reaching past offset + length. Returns how many.
    /// </summary>
    ValueTask<int> GetExtentsAsync(long offset, long length, Memory<ImageExtent> destination, CancellationToken ct);

    /// <summary>A hint that the range will be read soon.</summary>
    ValueTask CacheAsync(long offset, long length, CancellationToken ct);
}

/// <summary>What opening an image gave: the image, or why not (no such image: both null).</summary>
public readonly record struct ImageOpenResult(IImage? Image, string? Refusal)
{
    public static ImageOpenResult NotFound => default;

    public static ImageOpenResult Opened(IImage image) => new(image, null);

    /// <summary>The image exists but may not be opened now; <paramref name="reason"/> says why, for the client
    /// (e.g. which server holds it).</summary>
    public static ImageOpenResult Refused(string reason) => new(null, reason);
}

/// <summary>
/// Where exports come from: the names an NBD server offers and the images behind them. Asynchronous, because a
/// cluster catalog asks the cluster (and takes a lock) to answer.
/// </summary>
public interface IImageCatalog
{
    /// <summary>The names of the images that can be served, sorted.</summary>
    ValueTask<IReadOnlyList<string>> ListNamesAsync(CancellationToken ct);

    /// <summary>Whether an image of that name exists (a bad name does not).</summary>
    ValueTask<bool> ExistsAsync(string name, CancellationToken ct);

    /// <summary>Opens an image: the image, <see cref="ImageOpenResult.NotFound"/> (a bad name is also "none"), or a
    /// refusal with its reason.</summary>
    ValueTask<ImageOpenResult> OpenAsync(string name, bool readOnly, CancellationToken ct);

    /// <summary>A description for people (NBD_INFO_DESCRIPTION), or null.</summary>
    ValueTask<string?> DescribeAsync(string name, CancellationToken ct);
}
