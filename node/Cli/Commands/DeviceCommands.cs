using System.CommandLine;
using Appliance.Cli.Common;
using Appliance.Platform.Devices;
using Appliance.Platform.Native;

namespace Appliance.Cli.Commands;

/// <summary>`appliance device ...`: look at and create the disks the object store runs on.</summary>
public static class DeviceCommands
{
    public static Command Create()
    {
        var device = new Command("device", "Inspect disks (block devices or files) and create file-backed disks.");
        device.Subcommands.Add(Info());
        device.Subcommands.Add(CreateFile());
        return device;
    }

    private static Command Info()
    {
        var path = new Argument<string>("path") { Description = "A block device (/dev/vdb) or a file used as a disk." };
        var command = new Command("info", "Open a disk read-only and print its kind, size, block size and I/O mode.") { path };
        command.SetAction(async (parse, ct) =>
        {
            var p = parse.GetRequiredValue(path);
            if (!File.Exists(p))
            {
                throw new CliException(ExitCodes.NotFound, $"{p} does not exist; give a block device such as /dev/vdb or a file made by 'appliance device create'.");
            }
            await using var dev = FileDevice.Open(p, new FileDeviceOptions { ReadOnly = true, Exclusive = false, QueueDepth = 4 });
            var output = parse.InvocationConfiguration.Output;
            var fs = Posix.statvfs(Path.GetDirectoryName(Path.GetFullPath(p)) ?? "/");
            output.WriteLine($"path         {dev.Name}");
            output.WriteLine($"kind         {(dev.Kind == DeviceKind.BlockDevice ? "block device" : "regular file")}");
            output.WriteLine($"size         {dev.Size} bytes ({ByteSize.Format(dev.Size)})");
            output.WriteLine($"block size   {dev.BlockSize} bytes");
            output.WriteLine($"direct I/O   {(dev.DirectIo ? "yes (O_DIRECT)" : "no: the filesystem refuses O_DIRECT; buffered I/O made durable by fdatasync")}");
            if (dev.Kind == DeviceKind.RegularFile)
            {
                output.WriteLine($"host fs free {ByteSize.Format((long)(fs.f_bavail * fs.f_frsize))}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command CreateFile()
    {
        var path = new Argument<string>("path") { Description = "The file to create; it must not exist." };
        var size = new Option<string>("--size") { Description = "Its size: 4096, 512M, 10G, 1T. Space is allocated as it is written.", Required = true };
        var command = new Command("create", "Create a sparse file to use as a disk.") { path, size };
        command.SetAction(async (parse, ct) =>
        {
            var p = parse.GetRequiredValue(path);
            var bytes = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            if (bytes < 1 << 20)
            {
                throw new CliException(ExitCodes.Usage, $"--size {bytes} is too small for a disk; give at least 1M.");
            }
            if (File.Exists(p) || Directory.Exists(p))
            {
                throw new CliException(ExitCodes.Refused, $"{p} already exists; choose another path, or remove it first if its data is not needed.");
            }
            await using var dev = FileDevice.CreateFile(p, bytes);
            parse.InvocationConfiguration.Output.WriteLine(
                $"created {p}: {ByteSize.Format(dev.Size)}, block size {dev.BlockSize}, direct I/O {(dev.DirectIo ? "yes" : "no")}");
            return ExitCodes.Ok;
        });
        return command;
    }
}
