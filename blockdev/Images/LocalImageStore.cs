using Appliance.Platform.Native;

namespace Appliance.BlockDev.Images;

/// <summary>What `image ls` / `image info` show about an image.</summary>
public sealed record ImageInfo(string Name, long Size, long AllocatedBytes, string Path);

/// <summary>
/// The local image catalog: every regular file under a directory is an image, named by its path relative to the
/// directory ('/' between components, so `pool/image` is the file DIR/pool/image). Hidden files, symlinks and
/// files whose names are not valid image names are not images.
/// </summary>
public sealed class LocalImageStore : IImageCatalog
{
    public LocalImageStore(string root)
    {
        Root = System.IO.Path.GetFullPath(root);
        if (!Directory.Exists(Root))
        {
            throw new ImageCatalogException(ImageCatalogError.NotFound, $"image directory {Root} does not exist; create it first (mkdir -p {Root})");
        }
    }

    /// <summary>The directory holding the images (absolute).</summary>
    public string Root { get; }

    /// <summary>The file of an image name, checked: the name is valid and no component of the path is a symlink.</summary>
    public string PathOf(string name)
    {
        if (ImageName.Problem(name) is { } problem)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, problem);
        }
        var path = System.IO.Path.Combine(Root, name);
        // The name rules already make '..' impossible; this is the belt to those braces.
        if (!System.IO.Path.GetFullPath(path).StartsWith(Root + "/", StringComparison.Ordinal))
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidName, $"'{name}' leaves the image directory");
        }
        var p = Root;
        foreach (var component in name.Split('/'))
        {
            p = System.IO.Path.Combine(p, component);
            var info = new FileInfo(p);
            if (info.Exists || Directory.Exists(p))
            {
                if (info.LinkTarget is not null || new DirectoryInfo(p).LinkTarget is not null)
                {
                    throw new ImageCatalogException(ImageCatalogError.InvalidName, $"{p} is a symlink; images are regular files inside {Root}");
                }
            }
        }
        return path;
    }

    public IReadOnlyList<string> ListNames() => [.. List().Select(i => i.Name)];

    ValueTask<IReadOnlyList<string>> IImageCatalog.ListNamesAsync(CancellationToken ct) => ValueTask.FromResult(ListNames());

    ValueTask<bool> IImageCatalog.ExistsAsync(string name, CancellationToken ct)
    {
        try
        {
            return ValueTask.FromResult(ImageName.IsValid(name) && File.Exists(PathOf(name)));
        }
        catch (ImageCatalogException)
        {
            return ValueTask.FromResult(false);
        }
    }

    ValueTask<ImageOpenResult> IImageCatalog.OpenAsync(string name, bool readOnly, CancellationToken ct) =>
        ValueTask.FromResult(TryOpen(name, readOnly) is { } image ? ImageOpenResult.Opened(image) : ImageOpenResult.NotFound);

    /// <summary>Every image, sorted by name.</summary>
    public IReadOnlyList<ImageInfo> List()
    {
        var result = new List<ImageInfo>();
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden | FileAttributes.ReparsePoint, IgnoreInaccessible = true };
        foreach (var file in Directory.EnumerateFiles(Root, "*", options))
        {
            var name = System.IO.Path.GetRelativePath(Root, file).Replace(System.IO.Path.DirectorySeparatorChar, '/');
            if (ImageName.IsValid(name))
            {
                result.Add(Describe(name, file));
            }
        }
        result.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return result;
    }

    public ImageInfo Info(string name)
    {
        var path = PathOf(name);
        return File.Exists(path) ? Describe(name, path) : throw NotFound(name);
    }

    /// <summary>Creates a sparse image of <paramref name="size"/> bytes (a multiple of 512); refuses an existing name.</summary>
    public ImageInfo Create(string name, long size)
    {
        CheckSize(size);
        var path = PathOf(name);
        if (File.Exists(path) || Directory.Exists(path))
        {
            throw new ImageCatalogException(ImageCatalogError.Exists, $"image {name} already exists ({path}); choose another name or remove it with 'appliance image rm'");
        }
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        using (var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
        {
            RandomAccess.SetLength(handle, size);
        }
        return Describe(name, path);
    }

    /// <summary>Deletes an image; refuses while a server has it open.</summary>
    public void Remove(string name)
    {
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            throw NotFound(name);
        }
        using var handle = OpenExclusive(name, path);
        File.Delete(path);
    }

    /// <summary>Changes the size; shrinking (which drops data) needs <paramref name="allowShrink"/>. Refuses while in use.</summary>
    public ImageInfo Resize(string name, long size, bool allowShrink)
    {
        CheckSize(size);
        var path = PathOf(name);
        if (!File.Exists(path))
        {
            throw NotFound(name);
        }
        using (var handle = OpenExclusive(name, path))
        {
            var current = RandomAccess.GetLength(handle);
            if (size < current && !allowShrink)
            {
                throw new ImageCatalogException(ImageCatalogError.WouldShrink,
                    $"image {name} is {current} bytes; shrinking it to {size} drops the data past the new end. Add --allow-shrink if that is intended.");
            }
            RandomAccess.SetLength(handle, size);
        }
        return Describe(name, path);
    }

    public IImage? TryOpen(string name, bool readOnly)
    {
        if (!ImageName.IsValid(name))
        {
            return null;
        }
        string path;
        try
        {
            path = PathOf(name);
        }
        catch (ImageCatalogException)
        {
            return null;
        }
        return File.Exists(path) ? LocalImage.Open(name, path, readOnly) : null;
    }

    ValueTask<string?> IImageCatalog.DescribeAsync(string name, CancellationToken ct) => ValueTask.FromResult<string?>($"local image {name}");

    private static void CheckSize(long size)
    {
        if (size <= 0 || size % 512 != 0)
        {
            throw new ImageCatalogException(ImageCatalogError.InvalidSize, $"size {size} is not a positive multiple of 512 bytes");
        }
    }

    private static ImageCatalogException NotFound(string name) =>
        new(ImageCatalogError.NotFound, $"no image named {name}; 'appliance image ls' lists them");

    private static ImageInfo Describe(string name, string path)
    {
        var st = Posix.statx(path);
        return new ImageInfo(name, (long)st.stx_size, (long)st.stx_blocks * 512, path);
    }

    /// <summary>Opens the file and takes an exclusive flock: a server holding its shared lock makes this fail.</summary>
    private static Microsoft.Win32.SafeHandles.SafeFileHandle OpenExclusive(string name, string path)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        var success = false;
        handle.DangerousAddRef(ref success);
        try
        {
            Posix.flock((int)handle.DangerousGetHandle(), Constants.LOCK_EX | Constants.LOCK_NB, path);
            return handle;
        }
        catch (PlatformBusyException)
        {
            handle.Dispose();
            throw new ImageCatalogException(ImageCatalogError.InUse, $"image {name} is open in an NBD server; stop serving it first");
        }
        finally
        {
            if (success)
            {
                handle.DangerousRelease();
            }
        }
    }
}
