using Appliance.BlockDev.Images;

namespace Appliance.BlockDev.Tests.Images;

/// <summary>Image names and the local catalog: no way out of the directory, refusals with reasons.</summary>
public sealed class LocalImageStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "imgstore-" + Guid.NewGuid().ToString("N")[..10]);

    public LocalImageStoreTests() => Directory.CreateDirectory(Path.Combine(_dir, "images"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("disk")]
    [InlineData("pool/image")]
    [InlineData("a/b/c-1_2.3+x")]
    public void Valid_names(string name) => Assert.Null(ImageName.Problem(name));

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("../x")]
    [InlineData("a/../../x")]
    [InlineData("/abs")]
    [InlineData("a//b")]
    [InlineData("a/")]
    [InlineData(".hidden")]
    [InlineData("a b")]
    [InlineData("a\\b")]
    [InlineData("a\0b")]
    [InlineData("ünï")]
    public void Invalid_names(string name) => Assert.NotNull(ImageName.Problem(name));

    [Fact]
    public void Create_list_resize_remove_and_their_refusals()
    {
        var store = new LocalImageStore(Path.Combine(_dir, "images"));
        store.Create("pool/a", 1 << 20);
        store.Create("b", 4096);
        File.WriteAllText(Path.Combine(_dir, "images", ".tmp"), "not an image");
        File.WriteAllText(Path.Combine(_dir, "outside"), "secret");
        File.CreateSymbolicLink(Path.Combine(_dir, "images", "link"), Path.Combine(_dir, "outside"));
        Assert.Equal(["b", "pool/a"], store.ListNames());
        Assert.Equal(ImageCatalogError.Exists, Assert.Throws<ImageCatalogException>(() => store.Create("b", 4096)).Error);
        Assert.Equal(ImageCatalogError.InvalidSize, Assert.Throws<ImageCatalogException>(() => store.Create("c", 1000)).Error);
        Assert.Equal(ImageCatalogError.InvalidName, Assert.Throws<ImageCatalogException>(() => store.Create("../c", 4096)).Error);
        Assert.Equal(ImageCatalogError.InvalidName, Assert.Throws<ImageCatalogException>(() => store.Info("link")).Error);
        Assert.Null(store.TryOpen("link", readOnly: true));
        Assert.Null(store.TryOpen("../outside", readOnly: true));
        Assert.Equal(ImageCatalogError.WouldShrink, Assert.Throws<ImageCatalogException>(() => store.Resize("pool/a", 512 << 10, allowShrink: false)).Error);
        Assert.Equal(2L << 20, store.Resize("pool/a", 2 << 20, allowShrink: false).Size);
        Assert.Equal(512L << 10, store.Resize("pool/a", 512 << 10, allowShrink: true).Size);
        Assert.Equal(0, store.Info("pool/a").AllocatedBytes);
        store.Remove("b");
        Assert.Equal(ImageCatalogError.NotFound, Assert.Throws<ImageCatalogException>(() => store.Remove("b")).Error);
        Assert.Equal(["pool/a"], store.ListNames());
    }

    [Fact]
    public async Task An_image_open_for_serving_cannot_be_removed_or_resized()
    {
        var store = new LocalImageStore(Path.Combine(_dir, "images"));
        store.Create("busy", 1 << 20);
        await using (var image = store.TryOpen("busy", readOnly: false))
        {
            Assert.Equal(ImageCatalogError.InUse, Assert.Throws<ImageCatalogException>(() => store.Remove("busy")).Error);
            Assert.Equal(ImageCatalogError.InUse, Assert.Throws<ImageCatalogException>(() => store.Resize("busy", 2 << 20, false)).Error);
        }
        store.Remove("busy");
        Assert.Empty(store.ListNames());
    }
}
