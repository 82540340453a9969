namespace Appliance.Store.Tests;

public class SmokeTests
{
    [Fact]
    public async Task Write_read_remount()
    {
        var dev = await TestSupport.NewMemoryStoreAsync();
        var data = TestSupport.Bytes(100_000, 1);
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            await store.SubmitAsync(new Transaction().CreateCollection("pg1").Write("pg1", "a", 10, data).Write("pg1", "b", 0, data[..100]));
            Assert.Equal(data, (await store.ReadAsync("pg1", "a"))[10..]);
        }
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            var back = await store.ReadAsync("pg1", "a");
            Assert.Equal(100_010, back.Length);
            Assert.Equal(data, back[10..]);
            Assert.Equal(data[..100], await store.ReadAsync("pg1", "b"));
            Assert.True((await store.FsckAsync()).IsClean);
        }
    }
}
