using System.CommandLine;
using Appliance.BlockDev.Images;
using Appliance.BlockDev.Images.Cluster;
using Appliance.Cli.Common;

namespace Appliance.Cli.Commands;

/// <summary>
/// `appliance image ...`: create, list, inspect, resize, rename, remove, import and export block images. Images live
/// in the cluster (POOL/NAME, through --conf-dir and --id as every client command), or with --local DIR in a
/// directory of sparse files.
/// </summary>
public static partial class ImageCommands
{
    public static Command Create()
    {
        var image = new Command("image", "Manage block images served over NBD: cluster images (POOL/NAME), or with --local DIR sparse files in a directory.");
        MonitorCommands.AddCommon(image);
        image.Subcommands.Add(CreateImage());
        image.Subcommands.Add(List());
        image.Subcommands.Add(Remove());
        image.Subcommands.Add(Resize());
        image.Subcommands.Add(Rename());
        image.Subcommands.Add(Info());
        image.Subcommands.Add(Import());
        image.Subcommands.Add(Export());
        return image;
    }

    internal static Option<string> LocalOption() =>
        new("--local") { Description = "Local images in this directory instead of the cluster's (image 'pool/name' is the file DIR/pool/name)." };

    private static Argument<string> NameArgument() =>
        new("name") { Description = "The image: POOL/NAME in the cluster (e.g. data/vm1); with --local, components of letters, digits, '.', '_', '-', '+' separated by '/'." };

    private static Option<string> SizeOption(string description, bool required = true) => new("--size") { Description = description, Required = required };

    private static Option<bool> ForceOption() =>
        new("--force") { Description = "Break the lock of a live NBD server holding the image (it is fenced first: the OSDs refuse its writes)." };

    /// <summary>How long an administrative command's hold on an image lasts if it dies (it lets go when done).</summary>
    private static readonly TimeSpan AdminLease = TimeSpan.FromSeconds(30);

    internal static Task<ClusterImages> ConnectAsync(ParseResult parse, string what, bool force, CancellationToken ct) =>
        ClusterImages.ConnectAsync(parse, $"appliance image {what} (pid {Environment.ProcessId})", AdminLease, force, ct);

    private static Command CreateImage()
    {
        var local = LocalOption();
        var name = NameArgument();
        var size = SizeOption("The size: a multiple of 512 (10G, 512M...). Space is allocated as data is written.");
        var objectSize = new Option<string?>("--object-size") { Description = "Cluster images: the size of its objects, a power of two from 4K to 16M (default 4M)." };
        var command = new Command("create", "Create a thin-provisioned image.") { local, name, size, objectSize };
        command.SetAction(async (parse, ct) =>
        {
            var bytes = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(local) is { } dir)
            {
                Directory.CreateDirectory(dir);
                var info = Run(() => new LocalImageStore(dir).Create(parse.GetRequiredValue(name), bytes));
                output.WriteLine($"created image {info.Name}: {info.Size} bytes ({ByteSize.Format(info.Size)}), thin-provisioned, file {info.Path}");
                return ExitCodes.Ok;
            }
            var order = ImageHeader.DefaultOrder;
            if (parse.GetValue(objectSize) is { } os)
            {
                order = ImageHeader.OrderOf(ByteSize.Parse(os, "--object-size"))
                    ?? throw new CliException(ExitCodes.Usage, $"--object-size {os}: a power of two from 4K to 16M");
            }
            await using var cluster = await ConnectAsync(parse, "create", false, ct);
            var created = await RunAsync(() => cluster.Store.CreateAsync(parse.GetRequiredValue(name), bytes, order, ct));
            output.WriteLine($"created image {created.FullName}: {bytes} bytes ({ByteSize.Format(bytes)}), objects of {ByteSize.Format(created.Header.ObjectSize)}, id {created.Header.Id}, thin-provisioned");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command List()
    {
        var local = LocalOption();
        var pool = new Argument<string>("pool") { Description = "Only this pool's images (cluster).", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("ls", "List the images: name, size, and allocated bytes (local) or the server holding it (cluster).") { local, pool };
        command.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(local) is { } dir)
            {
                var images = Run(() => new LocalImageStore(dir).List());
                if (images.Count == 0)
                {
                    output.WriteLine("no images; create one with 'appliance image create --local DIR NAME --size 10G'");
                    return ExitCodes.Ok;
                }
                var width = Math.Max(4, images.Max(i => i.Name.Length));
                output.WriteLine($"{"NAME".PadRight(width)}  {"SIZE",12}  {"ALLOCATED",12}");
                foreach (var i in images)
                {
                    output.WriteLine($"{i.Name.PadRight(width)}  {ByteSize.Format(i.Size),12}  {ByteSize.Format(i.AllocatedBytes),12}");
                }
                return ExitCodes.Ok;
            }
            await using var cluster = await ConnectAsync(parse, "ls", false, ct);
            var names = await RunAsync(() => cluster.Store.ListAsync(parse.GetValue(pool), ct));
            if (names.Count == 0)
            {
                output.WriteLine("no images; create one with 'appliance image create POOL/NAME --size 10G'");
                return ExitCodes.Ok;
            }
            var infos = await Task.WhenAll(names.Select(n => RunAsync(() => cluster.Store.InfoAsync(n, ct))));
            var w = Math.Max(4, names.Max(n => n.Length));
            output.WriteLine($"{"NAME".PadRight(w)}  {"SIZE",10}  {"OBJECT",7}  SERVED BY");
            foreach (var i in infos)
            {
                output.WriteLine($"{i.FullName.PadRight(w)}  {ByteSize.Format(i.Header.Size),10}  {ByteSize.Format(i.Header.ObjectSize),7}  {Holder(i)}");
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    private static string Holder(ClusterImageInfo i) =>
        i.Holder is null ? "-" : i.HolderExpired ? $"{i.Holder} (lease expired)" : i.Holder.ToString();

    private static Command Remove()
    {
        var local = LocalOption();
        var name = NameArgument();
        var force = ForceOption();
        var command = new Command("rm", "Delete an image and its data (refused while an NBD server serves it).") { local, name, force };
        command.SetAction(async (parse, ct) =>
        {
            var n = parse.GetRequiredValue(name);
            if (parse.GetValue(local) is { } dir)
            {
                Run(() =>
                {
                    new LocalImageStore(dir).Remove(n);
                    return 0;
                });
            }
            else
            {
                await using var cluster = await ConnectAsync(parse, "rm", parse.GetValue(force), ct);
                await RunAsync(async () =>
                {
                    await cluster.Store.RemoveAsync(n, ct);
                    return 0;
                });
            }
            parse.InvocationConfiguration.Output.WriteLine($"removed image {n}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Resize()
    {
        var local = LocalOption();
        var name = NameArgument();
        var size = SizeOption("The new size (a multiple of 512).");
        var allowShrink = new Option<bool>("--allow-shrink") { Description = "Allow a smaller size: the data past the new end is dropped." };
        var command = new Command("resize", "Change the size of an image (refused while an NBD server serves it).") { local, name, size, allowShrink };
        command.SetAction(async (parse, ct) =>
        {
            var bytes = ByteSize.Parse(parse.GetRequiredValue(size), "--size");
            var n = parse.GetRequiredValue(name);
            if (parse.GetValue(local) is { } dir)
            {
                var info = Run(() => new LocalImageStore(dir).Resize(n, bytes, parse.GetValue(allowShrink)));
                parse.InvocationConfiguration.Output.WriteLine($"image {info.Name} is now {info.Size} bytes ({ByteSize.Format(info.Size)})");
                return ExitCodes.Ok;
            }
            await using var cluster = await ConnectAsync(parse, "resize", false, ct);
            var header = await RunAsync(() => cluster.Store.ResizeAsync(n, bytes, parse.GetValue(allowShrink), ct));
            parse.InvocationConfiguration.Output.WriteLine($"image {n} is now {header.Size} bytes ({ByteSize.Format(header.Size)})");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Rename()
    {
        var name = NameArgument();
        var to = new Argument<string>("new-name") { Description = "The new name (NAME or POOL/NAME in the same pool)." };
        var command = new Command("rename", "Rename a cluster image within its pool (refused while an NBD server serves it).") { name, to };
        command.SetAction(async (parse, ct) =>
        {
            await using var cluster = await ConnectAsync(parse, "rename", false, ct);
            var n = parse.GetRequiredValue(name);
            await RunAsync(async () =>
            {
                await cluster.Store.RenameAsync(n, parse.GetRequiredValue(to), ct);
                return 0;
            });
            parse.InvocationConfiguration.Output.WriteLine($"renamed image {n} to {parse.GetRequiredValue(to)}");
            return ExitCodes.Ok;
        });
        return command;
    }

    private static Command Info()
    {
        var local = LocalOption();
        var name = NameArgument();
        var command = new Command("info", "Show an image's size, layout, what is allocated, and (cluster) which server holds it.") { local, name };
        command.SetAction(async (parse, ct) =>
        {
            var output = parse.InvocationConfiguration.Output;
            if (parse.GetValue(local) is { } dir)
            {
                var info = Run(() => new LocalImageStore(dir).Info(parse.GetRequiredValue(name)));
                output.WriteLine($"name       {info.Name}");
                output.WriteLine($"size       {info.Size} bytes ({ByteSize.Format(info.Size)})");
                output.WriteLine($"allocated  {info.AllocatedBytes} bytes ({ByteSize.Format(info.AllocatedBytes)})");
                output.WriteLine($"file       {info.Path}");
                return ExitCodes.Ok;
            }
            await using var cluster = await ConnectAsync(parse, "info", false, ct);
            var i = await RunAsync(() => cluster.Store.InfoAsync(parse.GetRequiredValue(name), ct));
            var used = await cluster.Store.UsedBytesAsync(i, ct);
            output.WriteLine($"name         {i.FullName}");
            output.WriteLine($"size         {i.Header.Size} bytes ({ByteSize.Format(i.Header.Size)})");
            output.WriteLine($"object size  {i.Header.ObjectSize} bytes ({ByteSize.Format(i.Header.ObjectSize)}), {i.Header.ObjectCount} objects");
            output.WriteLine($"allocated    {used} bytes ({ByteSize.Format(used)}, one copy)");
            output.WriteLine($"id           {i.Header.Id}");
            output.WriteLine($"created      {i.Header.Created:u}");
            output.WriteLine($"features     {i.Header.Features:x}");
            output.WriteLine($"served by    {Holder(i)}");
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>Runs a catalog operation, turning its refusals into CLI errors with the matching exit code.</summary>
    internal static T Run<T>(Func<T> operation)
    {
        try
        {
            return operation();
        }
        catch (ImageCatalogException e)
        {
            throw ToCli(e);
        }
    }

    internal static async Task<T> RunAsync<T>(Func<Task<T>> operation)
    {
        try
        {
            return await operation();
        }
        catch (ImageCatalogException e)
        {
            throw ToCli(e);
        }
        catch (ImageException e)
        {
            throw new CliException(ExitCodes.Failure, e.Message);
        }
    }

    private static CliException ToCli(ImageCatalogException e) => new(e.Error switch
    {
        ImageCatalogError.InvalidName or ImageCatalogError.InvalidSize => ExitCodes.Usage,
        ImageCatalogError.NotFound => ExitCodes.NotFound,
        _ => ExitCodes.Refused,
    }, e.Message);
}
