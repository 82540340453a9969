using System.CommandLine;
using Appliance.Cli.Common;
using Appliance.Platform.Devices;
using Appliance.Store;

namespace Appliance.Cli.Commands;

/// <summary>`appliance store ...`: create, check and inspect the object store on a disk, and move whole objects
/// between files and the store (for inspection and repair). The disk is opened exclusively: a second process (a
/// running OSD) holding it makes these commands refuse.</summary>
public static partial class StoreCommands
{
    public static Command Create()
    {
        var store = new Command("store", "The object store on a disk: mkfs, fsck, stat, put, get, ls, rm, bench.");
        store.Subcommands.Add(Mkfs());
        store.Subcommands.Add(Fsck());
        store.Subcommands.Add(Stat());
        store.Subcommands.Add(Put());
        store.Subcommands.Add(Get());
        store.Subcommands.Add(Ls());
        store.Subcommands.Add(Rm());
        store.Subcommands.Add(Bench());
        return store;
    }

    private static Argument<string> DevArg() => new("device") { Description = "A block device (/dev/vdb) or a file made by 'appliance device create'." };

    private static FileDevice OpenDevice(string path)
    {
        if (!File.Exists(path))
        {
            throw new CliException(ExitCodes.NotFound, $"{path} does not exist; give a block device such as /dev/vdb or a file made by 'appliance device create'.");
        }
        try
        {
            return FileDevice.Open(path);
        }
        catch (DeviceInUseException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
    }

    /// <summary>The one place where store errors become exit codes and messages for these commands.</summary>
    private static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (StoreException e)
        {
            var code = e switch
            {
                ForeignSignatureException => ExitCodes.Refused,
                NotAStoreException or ObjectNotFoundException or CollectionNotFoundException => ExitCodes.NotFound,
                _ => ExitCodes.Failure,
            };
            throw new CliException(code, e.Message);
        }
    }

    /// <summary>Opens and mounts the store on <paramref name="path"/>, runs <paramref name="body"/>, unmounts.</summary>
    private static Task<int> WithStoreAsync(string path, Func<ObjectStore, Task<int>> body) => RunAsync(async () =>
    {
        await using var dev = OpenDevice(path);
        await using var store = await ObjectStore.MountAsync(dev);
        return await body(store);
    });

    private static Command Mkfs()
    {
        var dev = DevArg();
        var wipe = new Option<bool>("--wipe") { Description = "Erase a disk that holds a filesystem, a partition table or another store." };
        var osd = new Option<int>("--osd-id") { Description = "The OSD id this store belongs to.", DefaultValueFactory = _ => 0 };
        var cluster = new Option<string?>("--cluster-id") { Description = "The cluster's UUID." };
        var journal = new Option<string?>("--journal-size") { Description = "Journal size (default 1/16 of the disk, 256K to 64M)." };
        var command = new Command("mkfs", "Create an object store on a disk.") { dev, wipe, osd, cluster, journal };
        command.SetAction((parse, ct) => RunAsync(async () =>
        {
            var clusterText = parse.GetValue(cluster);
            var clusterId = Guid.Empty;
            if (clusterText is not null && !Guid.TryParse(clusterText, out clusterId))
            {
                throw new CliException(ExitCodes.Usage, $"--cluster-id {clusterText} is not a UUID (like 0b7b6f8e-1f7c-4e55-9d8a-2a1a4b1f0c3d).");
            }
            long? journalBytes = parse.GetValue(journal) is { } j ? ByteSize.Parse(j, "--journal-size") : null;
            await using var device = OpenDevice(parse.GetRequiredValue(dev));
            Appliance.Store.Format.Superblock sb;
            try
            {
                sb = await ObjectStore.MkfsAsync(device, new MkfsOptions { Wipe = parse.GetValue(wipe), OsdId = parse.GetValue(osd), ClusterId = clusterId, JournalBytes = journalBytes }, ct);
            }
            catch (ArgumentException e)
            {
                throw new CliException(ExitCodes.InvalidInput, e.Message);
            }
            var g = sb.Geometry;
            var o = parse.InvocationConfiguration.Output;
            o.WriteLine($"created store {sb.StoreId} on {device.Name}: osd {sb.OsdId}, cluster {sb.ClusterId}");
            o.WriteLine($"journal {ByteSize.Format(g.JournalSize)}, checkpoint slots 2 x {ByteSize.Format(g.CheckpointSize)}, data {ByteSize.Format(g.DataBlocks * 4096)}");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Fsck()
    {
        var dev = DevArg();
        var command = new Command("fsck", "Check every invariant of the store; exit 1 with an exact report if anything is wrong.") { dev };
        command.SetAction((parse, ct) => RunAsync(async () =>
        {
            var o = parse.InvocationConfiguration.Output;
            await using var device = OpenDevice(parse.GetRequiredValue(dev));
            ObjectStore store;
            try
            {
                store = await ObjectStore.MountAsync(device, null, ct);
            }
            catch (CorruptionException e)
            {
                o.WriteLine($"ERROR: {e.Message}");
                o.WriteLine("the store cannot be mounted");
                return ExitCodes.Failure;
            }
            await using (store)
            {
                var report = await store.FsckAsync(ct);
                o.WriteLine(report.ToString());
                return report.IsClean ? ExitCodes.Ok : ExitCodes.Failure;
            }
        }));
        return command;
    }

    private static Command Stat()
    {
        var dev = DevArg();
        var command = new Command("stat", "Print usage and write amplification (device bytes written / client bytes written).") { dev };
        command.SetAction((parse, ct) => WithStoreAsync(parse.GetRequiredValue(dev), store =>
        {
            var s = store.StatFs();
            var sb = store.Superblock;
            var o = parse.InvocationConfiguration.Output;
            o.WriteLine($"store          {sb.StoreId} (osd {sb.OsdId}, cluster {sb.ClusterId})");
            o.WriteLine($"data           {ByteSize.Format(s.UsedBytes)} used of {ByteSize.Format(s.TotalBytes)}, {ByteSize.Format(s.FreeBytes)} free");
            o.WriteLine($"metadata       {ByteSize.Format(s.MetadataBytes)} of {ByteSize.Format(s.MetadataCapacity)}");
            o.WriteLine($"journal        {ByteSize.Format(s.JournalBytes)}");
            o.WriteLine($"collections    {s.Collections}");
            o.WriteLine($"objects        {s.Objects}");
            o.WriteLine($"client written {s.ClientBytesWritten} bytes");
            o.WriteLine($"device written {s.DeviceBytesWritten} bytes");
            o.WriteLine($"write amplification {(s.ClientBytesWritten == 0 ? "n/a (nothing written yet)" : s.WriteAmplification.ToString("F2", System.Globalization.CultureInfo.InvariantCulture))}");
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Put()
    {
        var dev = DevArg();
        var coll = new Argument<string>("collection");
        var obj = new Argument<string>("object");
        var file = new Argument<string>("file") { Description = "The file whose content becomes the object's data." };
        var command = new Command("put", "Store a file as an object (replacing it; the collection is created if missing). Objects up to 8 MiB are written in one transaction, larger ones in 8 MiB transactions.") { dev, coll, obj, file };
        command.SetAction((parse, ct) =>
        {
            var f = parse.GetRequiredValue(file);
            if (!File.Exists(f))
            {
                throw new CliException(ExitCodes.NotFound, $"{f} does not exist.");
            }
            return WithStoreAsync(parse.GetRequiredValue(dev), async store =>
            {
                var c = parse.GetRequiredValue(coll);
                var name = parse.GetRequiredValue(obj);
                await using var input = File.OpenRead(f);
                var first = new Transaction();
                if (!store.CollectionExists(c))
                {
                    first.CreateCollection(c);
                }
                else if (store.Stat(c, name) is not null)
                {
                    first.Remove(c, name);
                }
                first.Touch(c, name);
                var buffer = new byte[8 << 20];
                long offset = 0;
                var t = first;
                while (true)
                {
                    var n = await input.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
                    if (n > 0)
                    {
                        t.Write(c, name, offset, buffer.AsSpan(0, n));
                        offset += n;
                    }
                    await store.SubmitAsync(t, ct);
                    if (n < buffer.Length)
                    {
                        break;
                    }
                    t = new Transaction();
                }
                parse.InvocationConfiguration.Output.WriteLine($"stored {c}/{name}: {offset} bytes");
                return ExitCodes.Ok;
            });
        });
        return command;
    }

    private static Command Get()
    {
        var dev = DevArg();
        var coll = new Argument<string>("collection");
        var obj = new Argument<string>("object");
        var output = new Option<string?>("--output", "-o") { Description = "Write to this file instead of standard output." };
        var command = new Command("get", "Write an object's data to standard output (or --output FILE). A checksum error fails the command; no bad data is written.") { dev, coll, obj, output };
        command.SetAction((parse, ct) => WithStoreAsync(parse.GetRequiredValue(dev), async store =>
        {
            var data = await store.ReadAsync(parse.GetRequiredValue(coll), parse.GetRequiredValue(obj), ct: ct);
            if (parse.GetValue(output) is { } path)
            {
                await File.WriteAllBytesAsync(path, data, ct);
            }
            else
            {
                await using var stdout = Console.OpenStandardOutput();
                await stdout.WriteAsync(data, ct);
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Ls()
    {
        var dev = DevArg();
        var coll = new Argument<string?>("collection") { Arity = ArgumentArity.ZeroOrOne, Description = "List this collection's objects (in listing order: bit-reversed placement hash, then name); without it, list the collections." };
        var command = new Command("ls", "List collections, or the objects of one collection with their sizes.") { dev, coll };
        command.SetAction((parse, ct) => WithStoreAsync(parse.GetRequiredValue(dev), store =>
        {
            var o = parse.InvocationConfiguration.Output;
            if (parse.GetValue(coll) is { } c)
            {
                ObjectId? cursor = null;
                do
                {
                    var page = store.List(c, cursor, 1000);
                    foreach (var obj in page.Objects)
                    {
                        o.WriteLine($"{obj.Hash:x8} {obj.Size,12} {obj.Name}");
                    }
                    cursor = page.Next;
                }
                while (cursor is not null);
            }
            else
            {
                foreach (var name in store.ListCollections())
                {
                    o.WriteLine(name);
                }
            }
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Rm()
    {
        var dev = DevArg();
        var coll = new Argument<string>("collection");
        var obj = new Argument<string>("object");
        var command = new Command("rm", "Remove an object.") { dev, coll, obj };
        command.SetAction((parse, ct) => WithStoreAsync(parse.GetRequiredValue(dev), async store =>
        {
            var c = parse.GetRequiredValue(coll);
            var name = parse.GetRequiredValue(obj);
            await store.SubmitAsync(new Transaction().Remove(c, name), ct);
            parse.InvocationConfiguration.Output.WriteLine($"removed {c}/{name}");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
