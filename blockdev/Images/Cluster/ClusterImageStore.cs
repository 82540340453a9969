using System.Security.Cryptography;
using System.Text;
using Appliance.Client;
using Appliance.Osd.Protocol;
using Appliance.Wire.Codec;

namespace Appliance.BlockDev.Images.Cluster;

/// <summary>What `image ls` / `image info` show about a cluster image.</summary>
public sealed record ClusterImageInfo(string Pool, string Name, ImageHeader Header, LockHolder? Holder, bool HolderExpired)
{
    public string FullName => Pool + "/" + Name;
}

/// <summary>How a <see cref="ClusterImageStore"/> serves and manages images.</summary>
public sealed record ClusterImageOptions
{
    /// <summary>Who takes locks: this client's instance, the host, the owner (an NBD server's address).</summary>
    public required LockIdentity Identity { get; init; }

    /// <summary>Blocklists a holder before its lock is taken over.</summary>
    public required FenceAsync Fence { get; init; }

    /// <summary>How long a lock lasts unless renewed (renewed at a third of it).</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Break a live holder's lock (after fencing it) instead of refusing.</summary>
    public bool Force { get; init; }
}

/// <summary>
/// The images of a cluster: export names are <c>pool/image</c>. Each pool that has images holds a directory object
/// (omap: name → id), an id object per name (created exclusively: a name is taken once), and per image a header
/// (<see cref="ImageHeader"/>, and the lock) and data objects by id. Opening for writing takes the image's lock; a
/// live lock held elsewhere is a refusal naming its holder. Create, remove, resize and rename are here too (the CLI's
/// `image` commands); remove, resize and rename take the lock for their duration, so they are refused while a server
/// holds it.
/// </summary>
public sealed class ClusterImageStore(ClusterClient client, ClusterImageOptions options) : IImageCatalog
{
    public const long MaxSize = 1L << 50;

    public ClusterClient Client => client;

    /// <summary>Splits <c>pool/image</c>; a bad one is an <see cref="ImageCatalogException"/> saying what is wrong.</summary>
    public static (string Pool, string Image) Parse(string fullName)
    {
        var slash = fullName.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash == fullName.Length - 1 || fullName.IndexOf('/', slash + 1) >= 0)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, $"'{fullName}' is not POOL/IMAGE (e.g. data/vm1)");
        }
        var image = fullName[(slash + 1)..];
        if (ImageName.Problem(image) is { } problem)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, problem);
        }
        if (Limits.CheckObjectName(ImageObjects.IdObject(image)) is { } bad)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, $"image name '{image}': {bad}");
        }
        return (fullName[..slash], image);
    }

    private IoContext Pool(string pool)
    {
        try
        {
            return client.OpenPool(pool);
        }
        catch (PoolNotFoundException)
        {
            throw new ImageCatalogException(ImageCatalogError.NotFound, $"pool '{pool}' does not exist; 'appliance pool ls' lists them");
        }
    }

    private static ImageCatalogException NotFound(string fullName) =>
        new(ImageCatalogError.NotFound, $"no image named {fullName}; 'appliance image ls POOL' lists them");

    /// <summary>The image's id, or null when there is no image by that name.</summary>
    private static async Task<string?> IdOfAsync(IoContext io, string image, CancellationToken ct)
    {
        try
        {
            return Encoding.UTF8.GetString((await io.ReadAsync(ImageObjects.IdObject(image), 0, 256, ct)).Span);
        }
        catch (ObjectNotFoundException)
        {
            return null;
        }
    }

    private static async Task<ImageHeader?> HeaderAsync(IoContext io, string id, CancellationToken ct)
    {
        ReadOnlyMemory<byte> data;
        try
        {
            data = await io.ReadAsync(ImageObjects.Header(id), 0, 4096, ct);
        }
        catch (ObjectNotFoundException)
        {
            return null;
        }
        try
        {
            var header = ImageHeader.Decode(data.Span);
            if ((header.Features & ~ImageHeader.KnownFeatures) != 0)
            {
                throw new ImageException(ImageErrorKind.Invalid, $"image header {id} has features {header.Features:x} this release does not know; upgrade");
            }
            return header;
        }
        catch (WireFormatException e)
        {
            throw new ImageException(ImageErrorKind.Io, $"image header {ImageObjects.Header(id)} is damaged: {e.Message}");
        }
    }

    /// <summary>The image, its header and lock state; <see cref="ImageCatalogException"/> NotFound when there is none.</summary>
    public async Task<ClusterImageInfo> InfoAsync(string fullName, CancellationToken ct = default)
    {
        var (pool, image) = Parse(fullName);
        var io = Pool(pool);
        var id = await IdOfAsync(io, image, ct) ?? throw NotFound(fullName);
        var header = await HeaderAsync(io, id, ct) ?? throw NotFound(fullName);
        var lockState = await ImageLock.GetAsync(io, ImageObjects.Header(id), ct);
        return new ClusterImageInfo(pool, image, header, lockState.Holder, lockState.Expired);
    }

    /// <summary>How many bytes of the image's data objects exist (allocated in the cluster, one copy).</summary>
    public async Task<long> UsedBytesAsync(ClusterImageInfo info, CancellationToken ct = default)
    {
        var io = Pool(info.Pool);
        long used = 0;
        var count = info.Header.ObjectCount;
        for (long first = 0; first < count; first += 64)
        {
            var sizes = await Task.WhenAll(Enumerable.Range(0, (int)Math.Min(64, count - first)).Select(async i =>
            {
                try
                {
                    return (long)(await io.StatAsync(ImageObjects.Data(info.Header.Id, first + i), ct)).Size;
                }
                catch (ObjectNotFoundException)
                {
                    return 0L;
                }
            }));
            used += sizes.Sum();
        }
        return used;
    }

    /// <summary>Every image of <paramref name="pool"/> (all pools when null), sorted by full name.</summary>
    public async Task<IReadOnlyList<string>> ListAsync(string? pool, CancellationToken ct = default)
    {
        var pools = pool is not null ? [pool] : (client.OsdMap?.Pools.Values.Select(p => p.Name) ?? []).ToList();
        var names = new List<string>();
        foreach (var p in pools)
        {
            var io = Pool(p);
            try
            {
                await foreach (var (name, _) in io.ListOmapAsync(ImageObjects.Directory, "", 0, ct))
                {
                    names.Add(p + "/" + name);
                }
            }
            catch (ObjectNotFoundException)
            {
            }
            catch (InvalidRequestException) when (pool is null)
            {
                // An erasure-coded pool has no omap, so no images.
            }
        }
        names.Sort(StringComparer.Ordinal);
        return names;
    }

    /// <summary>Creates an image of <paramref name="size"/> bytes (a multiple of 512) with objects of 2^order bytes.</summary>
    public async Task<ClusterImageInfo> CreateAsync(string fullName, long size, int order = ImageHeader.DefaultOrder, CancellationToken ct = default)
    {
        var (pool, image) = Parse(fullName);
        CheckSize(size);
        if (order is < ImageHeader.MinOrder or > ImageHeader.MaxOrder)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidSize, "the object size is a power of two from 4K to 16M");
        }
        var io = Pool(pool);
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        var header = new ImageHeader(size, order, id, DateTimeOffset.UtcNow, 0);
        // The header first (an id nobody names yet), then the name exclusively: two creates of one name cannot
        // both succeed; the loser removes its header.
        await io.ExecuteAsync(ImageObjects.Header(id), [OsdOp.Create(true), OsdOp.WriteFull(header.Encode())], null, ct);
        try
        {
            await io.ExecuteAsync(ImageObjects.IdObject(image), [OsdOp.Create(true), OsdOp.WriteFull(Encoding.UTF8.GetBytes(id))], null, ct);
        }
        catch (ObjectExistsException)
        {
            await io.RemoveAsync(ImageObjects.Header(id), ct);
            throw new ImageCatalogException(ImageCatalogError.Exists, $"image {fullName} already exists; choose another name or remove it with 'appliance image rm'");
        }
        await io.SetOmapAsync(ImageObjects.Directory, [new(image, Encoding.UTF8.GetBytes(id))], ct);
        return new ClusterImageInfo(pool, image, header, null, false);
    }

    /// <summary>Takes the image's lock for an administrative change (refused while a server holds it), runs it, lets go.</summary>
    private async Task<T> WithLockAsync<T>(string fullName, Func<IoContext, string, ImageHeader, Task<T>> change, CancellationToken ct)
    {
        var (pool, image) = Parse(fullName);
        var io = Pool(pool);
        var id = await IdOfAsync(io, image, ct) ?? throw NotFound(fullName);
        _ = await HeaderAsync(io, id, ct) ?? throw NotFound(fullName);
        ImageLock held;
        try
        {
            held = await ImageLock.TakeAsync(io, ImageObjects.Header(id), fullName, options.Identity, options.Lease, options.Fence, options.Force, ct);
        }
        catch (ImageLockedException e)
        {
            throw new ImageCatalogException(ImageCatalogError.InUse, $"image {fullName} is being served by {e.Holder}; stop that server first");
        }
        try
        {
            var header = await HeaderAsync(io, id, ct) ?? throw NotFound(fullName);
            return await change(io, id, header);
        }
        finally
        {
            await held.DisposeAsync();
        }
    }

    /// <summary>Removes the image and its data (refused while a server holds it).</summary>
    public Task RemoveAsync(string fullName, CancellationToken ct = default) => WithLockAsync(fullName, async (io, id, header) =>
    {
        // Data first, then the header (which holds our lock: releasing it then finds nothing, which is fine), then
        // the name: a remove that stops part-way leaves a named image with fewer objects (run it again).
        var count = header.ObjectCount;
        for (long first = 0; first < count; first += 64)
        {
            await Task.WhenAll(Enumerable.Range(0, (int)Math.Min(64, count - first)).Select(async i =>
            {
                try
                {
                    await io.RemoveAsync(ImageObjects.Data(id, first + i), ct);
                }
                catch (ObjectNotFoundException)
                {
                }
            }));
        }
        var (_, image) = Parse(fullName);
        await io.RemoveAsync(ImageObjects.Header(id), ct);
        await io.RemoveOmapKeysAsync(ImageObjects.Directory, [image], ct);
        await io.RemoveAsync(ImageObjects.IdObject(image), ct);
        return 0;
    }, ct);

    /// <summary>Changes the size; shrinking drops the data past the new end and needs <paramref name="allowShrink"/>.</summary>
    public Task<ImageHeader> ResizeAsync(string fullName, long size, bool allowShrink, CancellationToken ct = default) => WithLockAsync(fullName, async (io, id, header) =>
    {
        CheckSize(size);
        if (size < header.Size && !allowShrink)
        {
            throw new ImageCatalogException(ImageCatalogError.WouldShrink,
                $"image {fullName} is {header.Size} bytes; shrinking it to {size} drops the data past the new end. Add --allow-shrink if that is intended.");
        }
        if (size < header.Size)
        {
            // Drop what lies past the new end, so growing again later reads zeros there.
            var lastKept = (size + header.ObjectSize - 1) >> header.ObjectOrder;
            if (size % header.ObjectSize != 0)
            {
                try
                {
                    await io.ExecuteAsync(ImageObjects.Data(id, lastKept - 1), [OsdOp.AssertExists(), OsdOp.Truncate((ulong)(size % header.ObjectSize))], null, ct);
                }
                catch (ObjectNotFoundException)
                {
                }
            }
            for (var obj = lastKept; obj < header.ObjectCount; obj++)
            {
                try
                {
                    await io.RemoveAsync(ImageObjects.Data(id, obj), ct);
                }
                catch (ObjectNotFoundException)
                {
                }
            }
        }
        var resized = header with { Size = size };
        await io.WriteFullAsync(ImageObjects.Header(id), resized.Encode(), ct);
        return resized;
    }, ct);

    /// <summary>Renames an image within its pool (refused while a server holds it, or when the new name is taken).</summary>
    public Task RenameAsync(string fullName, string newName, CancellationToken ct = default) => WithLockAsync(fullName, async (io, id, header) =>
    {
        var (pool, image) = Parse(fullName);
        var (newPool, newImage) = Parse(newName.Contains('/', StringComparison.Ordinal) ? newName : pool + "/" + newName);
        if (newPool != pool)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, $"an image is renamed within its pool ({pool}), not into {newPool}");
        }
        try
        {
            await io.ExecuteAsync(ImageObjects.IdObject(newImage), [OsdOp.Create(true), OsdOp.WriteFull(Encoding.UTF8.GetBytes(id))], null, ct);
        }
        catch (ObjectExistsException)
        {
            throw new ImageCatalogException(ImageCatalogError.Exists, $"image {pool}/{newImage} already exists");
        }
        await io.SetOmapAsync(ImageObjects.Directory, [new(newImage, Encoding.UTF8.GetBytes(id))], ct);
        await io.RemoveOmapKeysAsync(ImageObjects.Directory, [image], ct);
        await io.RemoveAsync(ImageObjects.IdObject(image), ct);
        return 0;
    }, ct);

    /// <summary>Opens an image: read-only without a lock, or for writing with the lock (or throws
    /// <see cref="ImageLockedException"/> naming the holder).</summary>
    public async Task<ClusterImage> OpenImageAsync(string fullName, bool readOnly, CancellationToken ct = default)
    {
        var (pool, image) = Parse(fullName);
        var io = Pool(pool);
        var id = await IdOfAsync(io, image, ct) ?? throw NotFound(fullName);
        var header = await HeaderAsync(io, id, ct) ?? throw NotFound(fullName);
        var held = readOnly ? null : await ImageLock.TakeAsync(io, ImageObjects.Header(id), fullName, options.Identity, options.Lease, options.Fence, options.Force, ct);
        if (held is not null)
        {
            // The size may have changed between the first read and the lock (a resize holds the lock): read again.
            try
            {
                header = await HeaderAsync(io, id, ct) ?? throw NotFound(fullName);
            }
            catch
            {
                await held.DisposeAsync();
                throw;
            }
        }
        return new ClusterImage(fullName, io, header, held);
    }

    private static void CheckSize(long size)
    {
        if (size <= 0 || size % 512 != 0 || size > MaxSize)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidSize, $"size {size} is not a positive multiple of 512 bytes up to {MaxSize >> 50} PiB");
        }
    }

    async ValueTask<IReadOnlyList<string>> IImageCatalog.ListNamesAsync(CancellationToken ct) => await ListAsync(null, ct);

    async ValueTask<bool> IImageCatalog.ExistsAsync(string name, CancellationToken ct)
    {
        try
        {
            var (pool, image) = Parse(name);
            return await IdOfAsync(Pool(pool), image, ct) is not null;
        }
        catch (ImageCatalogException)
        {
            return false;
        }
    }

    async ValueTask<ImageOpenResult> IImageCatalog.OpenAsync(string name, bool readOnly, CancellationToken ct)
    {
        try
        {
            return ImageOpenResult.Opened(await OpenImageAsync(name, readOnly, ct));
        }
        catch (ImageCatalogException e) when (e.Error is ImageCatalogError.NotFound or ImageCatalogError.InvalidName)
        {
            return ImageOpenResult.NotFound;
        }
        catch (ImageLockedException e)
        {
            return ImageOpenResult.Refused(e.Message);
        }
        catch (ClusterClientException e)
        {
            return ImageOpenResult.Refused($"the cluster did not answer: {e.Message}");
        }
    }

    async ValueTask<string?> IImageCatalog.DescribeAsync(string name, CancellationToken ct)
    {
        try
        {
            var info = await InfoAsync(name, ct);
            return $"cluster image {name}, objects of {info.Header.ObjectSize >> 10} KiB" + (info.Holder is { } h ? $", served by {h}" : "");
        }
        catch (Exception e) when (e is ImageCatalogException or ClusterClientException or ImageException)
        {
            return null;
        }
    }
}
