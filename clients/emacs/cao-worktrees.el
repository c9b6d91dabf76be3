;;; cao-worktrees.el --- Workers' git worktrees for cao.el  -*- lexical-binding: t; -*-

;; SPDX-License-Identifier: Apache-2.0

;;; Commentary:

;; A worker started with a worktree (a profile's `worktree: true', or `cao-worker-worktree')
;; works on its own branch in its own folder.  These commands list the open worktrees, show a
;; worker's changes as a diff, merge (or rebase) its branch into its base and discard it:
;; cao/listWorktrees, cao/mergeWorktree, cao/discardWorktree.
;;
;;   M-x cao-worktrees         the list: d diff, m merge, r rebase, k discard, g refresh
;;   M-x cao-worktree-diff     M-x cao-worktree-merge     M-x cao-worktree-discard

;;; Code:

(require 'cl-lib)
(require 'tabulated-list)
(require 'cao)

(defun cao-worktree-summary (worktree)
  "\"3 commits, 2 files changed\" and more, for WORKTREE (a WorktreeInfo plist)."
  (let ((commits (length (plist-get worktree :commits)))
        (files (length (plist-get worktree :files))))
    (concat (format "%d commit%s, %d file%s changed" commits (if (= commits 1) "" "s")
                    files (if (= files 1) "" "s"))
            (if (eq (plist-get worktree :dirty) t) " (uncommitted changes)" "")
            (if (eq (plist-get worktree :committedLeftovers) t) "; leftovers committed by the sidecar" ""))))

(defun cao-worktrees-list (&optional server)
  "The open worktrees of SERVER, asked now.
SERVER defaults to the current project's sidecar."
  (append (plist-get (cao-request :cao/listWorktrees nil nil server) :worktrees) nil))

(defun cao--worktree (terminal-id)
  "The open worktree of the worker TERMINAL-ID, or a `user-error'."
  (or (cl-find terminal-id (cao-worktrees-list) :key (lambda (w) (plist-get w :terminalId)) :test #'equal)
      (user-error "cao: no open worktree for worker %s" terminal-id)))

(defun cao--read-worktree (prompt)
  "Read the terminal id of a worker with an open worktree, with PROMPT.
In the worktrees list, the one at point."
  (or (and (derived-mode-p 'cao-worktrees-mode) (tabulated-list-get-id))
      (let* ((worktrees (cao-worktrees-list))
             (labels (mapcar (lambda (w)
                               (cons (format "%s  %s %s  %s" (plist-get w :branch) (plist-get w :profile)
                                             (plist-get w :terminalId) (cao-worktree-summary w))
                                     (plist-get w :terminalId)))
                             worktrees)))
        (unless labels (user-error "cao: no worker worktree is open"))
        (cdr (assoc (completing-read prompt labels nil t nil nil (caar labels)) labels)))))

;;;###autoload
(defun cao-worktree-diff (terminal-id)
  "Show the changes of worker TERMINAL-ID against its base, in `diff-mode'."
  (interactive (list (cao--read-worktree "Changes of worker: ")))
  (let* ((worktree (cao--worktree terminal-id))
         (branch (plist-get worktree :branch))
         (buffer (get-buffer-create (format "*cao diff %s*" branch)))
         (default-directory (file-name-as-directory (plist-get worktree :repository))))
    (with-current-buffer buffer
      (let ((inhibit-read-only t))
        (erase-buffer)
        (unless (eq 0 (call-process "git" nil t nil "diff" "--stat" "--patch"
                                    (plist-get worktree :baseCommit)
                                    (or (plist-get worktree :head) (concat "refs/heads/" branch))))
          (user-error "cao: git diff of %s failed: %s" branch (buffer-string))))
      (diff-mode)
      (setq buffer-read-only t)
      (goto-char (point-min)))
    (display-buffer buffer)
    buffer))

;;;###autoload
(defun cao-worktree-merge (terminal-id &optional rebase)
  "Merge the branch of worker TERMINAL-ID into its base.
With REBASE, rebase it onto the base and fast-forward the base.  A
conflict changes nothing and names the files.  Return the result."
  (interactive (list (cao--read-worktree "Merge the branch of worker: ") current-prefix-arg))
  (let* ((result (cao-request :cao/mergeWorktree
                              (list :terminalId terminal-id :strategy (if rebase "rebase" "merge"))))
         (worktree (plist-get result :worktree)))
    (if (eq (plist-get result :merged) t)
        (message "cao: %s merged into %s" (plist-get worktree :branch) (plist-get worktree :base))
      (message "cao: %s conflicts with %s in %s: nothing was changed, the branch is kept"
               (plist-get worktree :branch) (plist-get worktree :base)
               (mapconcat #'identity (append (plist-get result :conflicts) nil) ", ")))
    (cao--worktrees-refresh-list)
    result))

;;;###autoload
(defun cao-worktree-discard (terminal-id)
  "Throw away the work of worker TERMINAL-ID: its worktree and branch.
Its agent is terminated if it still runs."
  (interactive (list (cao--read-worktree "Discard the work of worker: ")))
  (when (or (not (called-interactively-p 'any))
            (yes-or-no-p (format "Discard the worktree and branch of worker %s? " terminal-id)))
    (let ((worktree (plist-get (cao-request :cao/discardWorktree (list :terminalId terminal-id)) :worktree)))
      (message "cao: %s discarded" (plist-get worktree :branch))
      (cao--worktrees-refresh-list)
      worktree)))

(defun cao-worktree-rebase (terminal-id)
  "Rebase the branch of worker TERMINAL-ID onto its base and fast-forward the base."
  (interactive (list (cao--read-worktree "Rebase the branch of worker: ")))
  (cao-worktree-merge terminal-id t))


;;; The list

(defvar cao-worktrees-mode-map
  (let ((map (make-sparse-keymap)))
    (set-keymap-parent map tabulated-list-mode-map)
    (define-key map "d" #'cao-worktree-diff)
    (define-key map "m" #'cao-worktree-merge)
    (define-key map "r" #'cao-worktree-rebase)
    (define-key map "k" #'cao-worktree-discard)
    map)
  "Keys of the worktrees list.")

(define-derived-mode cao-worktrees-mode tabulated-list-mode "CAO worktrees"
  "The workers' open git worktrees.
\\{cao-worktrees-mode-map}"
  (setq tabulated-list-format [("Worker" 10 t) ("Profile" 16 t) ("Branch" 32 t) ("State" 7 t) ("Work" 0 nil)])
  (add-hook 'tabulated-list-revert-hook #'cao--worktrees-entries nil t)
  (tabulated-list-init-header))

(defun cao--worktrees-entries ()
  "Fill the list from the sidecar."
  (setq tabulated-list-entries
        (mapcar (lambda (w)
                  (list (plist-get w :terminalId)
                        (vector (plist-get w :terminalId) (plist-get w :profile) (plist-get w :branch)
                                (plist-get w :state) (cao-worktree-summary w))))
                (cao-worktrees-list))))

(defun cao--worktrees-refresh-list ()
  "Redraw the worktrees list, if it is shown."
  (when-let ((buffer (get-buffer "*cao worktrees*")))
    (with-current-buffer buffer
      (cao--worktrees-entries)
      (tabulated-list-print t))))

;;;###autoload
(defun cao-worktrees ()
  "List the workers' open git worktrees.
Keys: d diff, m merge, r rebase, k discard, g refresh."
  (interactive)
  (let ((project default-directory)  ; the list's requests go to this project's sidecar
        (buffer (get-buffer-create "*cao worktrees*")))
    (with-current-buffer buffer
      (cao-worktrees-mode)
      (setq default-directory project)
      (cao--worktrees-entries)
      (tabulated-list-print))
    (pop-to-buffer buffer)
    buffer))

(provide 'cao-worktrees)
;;; cao-worktrees.el ends here
