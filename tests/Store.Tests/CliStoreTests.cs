using Appliance.Cli;
using Appliance.Platform.Devices;

namespace Appliance.Store.Tests;

/// <summary>`appliance store ...` end to end on a file device, run in-process.</summary>
public class CliStoreTests
{
    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = await CliApp.RunAsync(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Fact]
    public async Task Mkfs_put_get_ls_stat_rm_and_fsck_reports_rot_with_a_non_zero_exit()
    {
        using var dir = new TempDir();
        var disk = dir.File("disk");
        await FileDevice.CreateFile(disk, 32 << 20).DisposeAsync();
        var (code, _, err) = await RunAsync("store", "mkfs", disk, "--osd-id", "5", "--cluster-id", Guid.NewGuid().ToString());
        Assert.True(code == 0, err);
        (code, _, err) = await RunAsync("store", "mkfs", disk);
        Assert.Equal(6, code);
        Assert.Contains("--wipe", err);

        var input = dir.File("in");
        var data = TestSupport.Bytes(200_000, 9);
        await File.WriteAllBytesAsync(input, data);
        (code, _, err) = await RunAsync("store", "put", disk, "pg1", "obj", input);
        Assert.True(code == 0, err);
        var output = dir.File("out");
        (code, _, err) = await RunAsync("store", "get", disk, "pg1", "obj", "-o", output);
        Assert.True(code == 0, err);
        Assert.Equal(data, await File.ReadAllBytesAsync(output));
        var (lsCode, ls, _) = await RunAsync("store", "ls", disk);
        Assert.Equal(0, lsCode);
        Assert.Equal("pg1", ls.Trim());
        (_, ls, _) = await RunAsync("store", "ls", disk, "pg1");
        Assert.Contains("200000 obj", ls);
        var (_, stat, _) = await RunAsync("store", "stat", disk);
        Assert.Contains("objects        1", stat);
        Assert.Contains("write amplification", stat);
        var (fsckCode, fsck, _) = await RunAsync("store", "fsck", disk);
        Assert.True(fsckCode == 0, fsck);

        // Rot one byte of the object's data on the medium.
        long offset;
        await using (var dev = FileDevice.Open(disk))
        await using (var store = await ObjectStore.MountAsync(dev))
        {
            offset = store.DeviceOffsetsOf("pg1", "obj")[3].Offset + 77;
        }
        await using (var f = new FileStream(disk, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = offset;
            var b = f.ReadByte();
            f.Position = offset;
            f.WriteByte((byte)(b ^ 0x10));
        }
        (fsckCode, fsck, _) = await RunAsync("store", "fsck", disk);
        Assert.Equal(1, fsckCode);
        Assert.Contains("pg1/obj: block 3", fsck);
        (code, _, err) = await RunAsync("store", "get", disk, "pg1", "obj", "-o", output);
        Assert.Equal(1, code);
        Assert.Contains("checksum mismatch", err);

        (code, _, err) = await RunAsync("store", "rm", disk, "pg1", "obj");
        Assert.True(code == 0, err);
        (code, _, _) = await RunAsync("store", "get", disk, "pg1", "obj", "-o", output);
        Assert.Equal(3, code);
        (fsckCode, fsck, _) = await RunAsync("store", "fsck", disk);
        Assert.True(fsckCode == 0, fsck);
    }

    [Fact]
    public async Task A_device_in_use_by_another_opener_is_refused()
    {
        using var dir = new TempDir();
        var disk = dir.File("disk");
        await using var held = FileDevice.CreateFile(disk, 16 << 20);
        await ObjectStore.MkfsAsync(held, TestSupport.Small());
        var (code, _, err) = await RunAsync("store", "ls", disk);
        Assert.Equal(1, code);
        Assert.Contains("in use", err);
    }
}
