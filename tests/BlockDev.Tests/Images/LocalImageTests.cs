using Appliance.BlockDev.Images;

namespace Appliance.BlockDev.Tests.Images;

/// <summary>A local image on a real sparse file: data, allocation map, trim and zeroing.</summary>
public sealed class LocalImageTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "localimg-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly LocalImageStore _store;

    public LocalImageTests()
    {
        Directory.CreateDirectory(_dir);
        _store = new LocalImageStore(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private async Task<ImageExtent[]> MapAsync(IImage image, long offset, long length)
    {
        var extents = new ImageExtent[64];
        var n = await image.GetExtentsAsync(offset, length, extents, default);
        return extents[..n];
    }

    [Fact]
    public async Task Writes_read_back_and_the_map_tracks_data_trim_and_zeroing()
    {
        _store.Create("img", 8L << 20);
        await using var image = _store.TryOpen("img", readOnly: false)!;
        Assert.Equal(8L << 20, image.Size);
        Assert.Equal([new ImageExtent(8L << 20, ExtentFlags.Hole | ExtentFlags.Zero)], await MapAsync(image, 0, 8L << 20));
        var data = new byte[1 << 20];
        new Random(3).NextBytes(data);
        await image.WriteAsync(2 << 20, data, fua: true, default);
        var back = new byte[1 << 20];
        await image.ReadAsync(2 << 20, back, default);
        Assert.Equal(data, back);
        Assert.Equal(
            [new ImageExtent(2 << 20, ExtentFlags.Hole | ExtentFlags.Zero), new ImageExtent(1 << 20, ExtentFlags.Data), new ImageExtent(5 << 20, ExtentFlags.Hole | ExtentFlags.Zero)],
            await MapAsync(image, 0, 8L << 20));
        // The map is clipped to the range asked for.
        Assert.Equal([new ImageExtent(4096, ExtentFlags.Data)], await MapAsync(image, (2 << 20) + 100, 4096));

        await image.TrimAsync(2 << 20, 512 << 10, fua: false, default);
        await image.ReadAsync(2 << 20, back, default);
        Assert.True(back.AsSpan(0, 512 << 10).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data.AsSpan(512 << 10).ToArray(), back.AsSpan(512 << 10).ToArray());
        Assert.Equal(ExtentFlags.Hole | ExtentFlags.Zero, (await MapAsync(image, 2 << 20, 4096))[0].Flags);

        // NO_HOLE zeroing keeps the blocks allocated; plain zeroing may punch. Both read back as zeroes.
        Assert.True(await image.ZeroAsync((5 << 19) + 1, 1000, ZeroOptions.NoHole, fua: false, default));
        Assert.True(await image.ZeroAsync(3 << 20, 1 << 20, ZeroOptions.FastOnly, fua: true, default));
        await image.ReadAsync(2 << 20, back, default);
        Assert.True(back.AsSpan((512 << 10) + 1, 1000).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data[(512 << 10) + 1001], back[(512 << 10) + 1001]);
        await image.FlushAsync(default);
    }

    [Fact]
    public async Task A_read_only_image_refuses_changes()
    {
        _store.Create("ro", 1 << 20);
        await using var image = _store.TryOpen("ro", readOnly: true)!;
        Assert.True(image.IsReadOnly);
        var e = await Assert.ThrowsAsync<ImageException>(async () => await image.WriteAsync(0, new byte[1], false, default));
        Assert.Equal(ImageErrorKind.ReadOnly, e.Kind);
        await Assert.ThrowsAsync<ImageException>(async () => await image.TrimAsync(0, 1, false, default));
        await Assert.ThrowsAsync<ImageException>(async () => await image.ZeroAsync(0, 1, ZeroOptions.None, false, default));
    }
}
