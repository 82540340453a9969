namespace Appliance.BlockDev.Tests.Clients;

/// <summary>
/// nbdfuse exposes the export as a file; on it mkfs.ext4, a loop mount (the kernel's ext4 doing real I/O through
/// FUSE and NBD), file writes and e2fsck all succeed.
/// </summary>
public sealed class NbdFuseTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Mkfs_loop_mount_write_files_and_fsck_through_nbdfuse()
    {
        await using var s = await TestServer.StartAsync(null, ("fs/ext4", 96L << 20));
        await Ext4OverNbd.RunAsync(s.UnixUri("fs/ext4"), 96L << 20, s.Dir, output);
    }
}
